//! The `asena-codegen` binary: `check` lists a document and fails with the pointer of what
//! it cannot represent; `generate` writes a standalone crate that `cargo build`s and passes
//! clippy with `-D warnings`.

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
    for line in [
        "User Service 1.0.0",
        "endpoint userEvents at /user/events/{userId} (channels: userEvents)",
        "  param userId",
        "  operation receiveUserEvent (receive) on userEvents: userSignedUp",
        "  clients send: userSignedUp",
        "  the server sends: userSignedUp",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
}

#[test]
fn check_fails_with_the_pointer() {
    let dir = std::env::temp_dir().join(format!("asena-codegen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spec = dir.join("bad.yaml");
    std::fs::write(
        &spec,
        "asyncapi: 3.1.0\ninfo: {title: T, version: '1'}\nchannels:\n  c:\n    address: /c\n    messages:\n      m: {payload: {type: object, properties: {a: {if: {}}}}}\n\
         operations:\n  o: {action: send, channel: {$ref: '#/channels/c'}}\n",
    )
    .expect("write");
    let out = codegen(&["check", spec.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "bad.yaml#/channels/c/messages/m/payload/properties/a/if: `if` is not supported"
        ),
        "{err}"
    );
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
