//! The runtime's top-level modules form layers: `lib.rs` declares them bottom-up, and a
//! module may name (`crate::<module>`) only modules declared before it. That rules out import
//! cycles between top-level modules and keeps the low layers (frames, rooms, the wire
//! format, configuration) ignorant of the app, DI and HTTP.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level modules in the order `lib.rs` declares them.
fn layers() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// Every `.rs` file of a top-level module (`foo.rs` or `foo/**.rs`).
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut stack = vec![src().join(module)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read module dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    assert!(!out.is_empty(), "module `{module}` has no source files");
    out
}

/// Top-level modules named as `crate::<module>` in code (comments and doc links excluded),
/// including inside `use crate::{a, b::c}` groups.
fn uses(path: &Path, modules: &[String]) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).expect("read source");
    let mut found = BTreeSet::new();
    let mut in_group = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                in_group = true;
                rest = group;
                break;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
        if in_group {
            for item in rest.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
            if code.contains('}') {
                in_group = false;
            }
        }
    }
    found.retain(|m| modules.contains(m));
    found
}

#[test]
fn modules_only_use_the_layers_below_them() {
    let layers = layers();
    assert!(
        layers.len() >= 10,
        "lib.rs should declare the layers: {layers:?}"
    );
    let mut violations = Vec::new();
    for (i, module) in layers.iter().enumerate() {
        let allowed = &layers[..i];
        for file in files_of(module) {
            for used in uses(&file, &layers) {
                if used != *module && !allowed.contains(&used) {
                    violations.push(format!(
                        "{} (layer `{module}`) uses `crate::{used}`, which is not below it",
                        file.strip_prefix(src()).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let dir = std::env::temp_dir().join(format!("asena-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("probe.rs");
    std::fs::write(
        &file,
        "use crate::{\n    app::Asena,\n    wire,\n};\n// crate::di in a comment\nfn f() { crate::rooms::x(); }\n",
    )
    .expect("write probe");
    let modules: Vec<String> = ["app", "wire", "di", "rooms", "frame"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let found = uses(&file, &modules);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["app", "rooms", "wire"]
    );
}
