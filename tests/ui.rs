//! Compile-fail and compile-pass tests of the macros (trybuild). The `.stderr` snapshots are
//! for the installed stable toolchain; re-bless with
//! `TRYBUILD=overwrite cargo test -p asena-tests --all-features --test ui` after a toolchain
//! change and read every changed message.

use std::path::Path;

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}

/// One mistake, one error: a macro that fails emits the item and stand-in impls next to its
/// `compile_error!`, so nothing else in a fixture fails because of it, and each fixture holds
/// exactly one mistake.
#[test]
fn every_fail_fixture_reports_exactly_one_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/fail");
    let mut fixtures = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("ui/fail is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        fixtures += 1;
        let stderr = path.with_extension("stderr");
        let text = std::fs::read_to_string(&stderr)
            .unwrap_or_else(|e| panic!("{} has no snapshot: {e}", path.display()));
        let errors = text
            .lines()
            .filter(|l| l.starts_with("error:") || l.starts_with("error["))
            .count();
        if errors != 1 {
            wrong.push(format!("{}: {errors} errors", stderr.display()));
        }
    }
    assert!(fixtures > 0, "no fixture found in {}", dir.display());
    assert!(
        wrong.is_empty(),
        "fixtures without exactly one error:\n{}",
        wrong.join("\n")
    );
}
