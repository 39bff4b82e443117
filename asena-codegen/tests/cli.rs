//! The `asena-codegen` binary: `check` lists a document (its failure is in `errors.rs`);
//! `generate` writes a standalone crate that `cargo build`s and passes clippy with
//! `-D warnings`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the crate")
        .to_path_buf()
}

fn codegen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_asena-codegen"))
        .args(args)
        .output()
        .expect("run asena-codegen")
}

#[test]
fn check_lists_what_a_document_holds() {
    let spec = workspace().join("examples/user-events/asyncapi.yaml");
    let out = codegen(&["check", spec.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = [
        "User Service 1.0.0",
        "endpoint userEvents at /user/events/{userId} (channels: userEvents)",
        "  param userId",
        "  operation receiveUserEvent (receive) on userEvents: userSignedUp",
        "  clients send: userSignedUp",
        "  the server sends: userSignedUp",
    ];
    let missing: Vec<&str> = expected
        .into_iter()
        .filter(|line| !text.lines().any(|l| l == *line))
        .collect();
    assert!(missing.is_empty(), "missing {missing:?} in:\n{text}");
}

/// Generates the User Service as a crate and builds it from the workspace's lock file (the
/// same versions, nothing fetched) into a target directory of its own.
#[test]
fn generate_writes_a_crate_that_builds_and_passes_clippy() {
    let root = workspace();
    let out_dir = root.join("target/codegen-cli/user-events-client");
    let _ = std::fs::remove_dir_all(&out_dir);
    let spec = root.join("examples/user-events/asyncapi.yaml");
    let out = codegen(&[
        "generate",
        spec.to_str().expect("utf-8 path"),
        "--out",
        out_dir.to_str().expect("utf-8 path"),
        "--crate-name",
        "user-events-client",
        "--asena-path",
        root.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(root.join("Cargo.lock"), out_dir.join("Cargo.lock")).expect("lock file");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for args in [
        &["build", "--quiet", "--offline"][..],
        &[
            "clippy",
            "--quiet",
            "--offline",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ] {
        let status = Command::new(&cargo)
            .args(args)
            .current_dir(&out_dir)
            .env("CARGO_TARGET_DIR", root.join("target/codegen-cli/target"))
            .env_remove("RUSTFLAGS")
            .status()
            .expect("run cargo");
        assert!(
            status.success(),
            "`cargo {}` fails on the generated crate",
            args[0]
        );
    }
    let lib = std::fs::read_to_string(out_dir.join("src/lib.rs")).expect("lib.rs");
    assert!(lib.starts_with("//! User Service 1.0.0"), "{lib}");
    assert!(lib.contains("pub struct UserEvents;"), "{lib}");
}
