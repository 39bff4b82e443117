//! What the generator's test files share.

use std::path::PathBuf;

/// Writes `text` as `name` in a fresh directory of this process; returns its path.
pub fn document(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("asena-codegen-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}
