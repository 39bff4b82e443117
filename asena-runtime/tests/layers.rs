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

/// Every `.rs` file under `src/` but `lib.rs`, with its module path (`namespace/mod.rs` is
/// `["namespace"]`, `namespace/socket.rs` is `["namespace", "socket"]`).
fn source_files() -> Vec<(PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(src()).expect("under src");
            if path.extension().is_none_or(|e| e != "rs") || relative == Path::new("lib.rs") {
                continue;
            }
            let mut module: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            out.push((path, module));
        }
    }
    out
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests`.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file names through `crate::`, `super::` and `self::`, groups included
/// (`use super::{a::B, c}` names `a::B` and `c`), made absolute.
fn paths_named(code: &str, module: &[String], is_mod_rs: bool) -> Vec<Vec<String>> {
    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }
    /// The `::`-separated path at the start of `s` (stops at anything else).
    fn path_at(mut s: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let name = ident(s.trim_start());
            if name.is_empty() {
                return out;
            }
            out.push(name.to_owned());
            s = &s.trim_start()[name.len()..];
            match s.strip_prefix("::") {
                Some(rest) if !rest.starts_with('{') => s = rest,
                _ => return out,
            }
        }
    }
    let mut found = Vec::new();
    for root in ["crate::", "super::", "self::"] {
        let base: Vec<String> = match root {
            "crate::" => Vec::new(),
            // `super` of `a/b.rs` (module a::b) is `a`; of `a/mod.rs` (module a) it is the root.
            "super::" => module[..module.len().saturating_sub(1)].to_vec(),
            _ if is_mod_rs => module.to_vec(),
            _ => module.to_vec(),
        };
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            rest = &rest[i + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let mut path = base.clone();
                    path.extend(path_at(item));
                    found.push(path);
                }
            } else {
                let mut path = base.clone();
                path.extend(path_at(rest));
                found.push(path);
            }
        }
    }
    found
}

/// No two files of the runtime name each other, directly or around a loop: the files of one
/// module form layers too (a `mod.rs` may use its children, or they it, not both ways).
#[test]
fn no_import_cycles_between_files() {
    let files = source_files();
    let index: std::collections::HashMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, (_, module))| (module.clone(), i))
        .collect();
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); files.len()];
    for (i, (path, module)) in files.iter().enumerate() {
        let is_mod_rs = path.ends_with("mod.rs");
        for named in paths_named(&code_of(path), module, is_mod_rs) {
            // The file a path lands in: its longest prefix that is a file's module.
            let target = (1..=named.len())
                .rev()
                .find_map(|n| index.get(&named[..n]).copied());
            if let Some(target) = target
                && target != i
            {
                edges[i].insert(target);
            }
        }
    }
    // Depth-first search; a grey node reached again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    fn visit(
        node: usize,
        edges: &[BTreeSet<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[node] = Mark::Grey;
        stack.push(node);
        for &next in &edges[node] {
            match marks[next] {
                Mark::Grey => {
                    let from = stack.iter().position(|&n| n == next).unwrap_or(0);
                    return Some(stack[from..].to_vec());
                }
                Mark::White => {
                    if let Some(cycle) = visit(next, edges, marks, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Black => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Black;
        None
    }
    let mut marks = vec![Mark::White; files.len()];
    for start in 0..files.len() {
        if marks[start] == Mark::White
            && let Some(cycle) = visit(start, &edges, &mut marks, &mut Vec::new())
        {
            let names: Vec<String> = cycle
                .iter()
                .map(|&n| {
                    files[n]
                        .0
                        .strip_prefix(src())
                        .unwrap_or(&files[n].0)
                        .display()
                        .to_string()
                })
                .collect();
            panic!("import cycle between files: {}", names.join(" -> "));
        }
    }
    assert!(files.len() > 40, "found {} source files", files.len());
}
