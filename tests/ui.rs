//! Compile-fail and compile-pass tests of the macros (trybuild). The `.stderr` snapshots are
//! for the installed stable toolchain; re-bless with
//! `TRYBUILD=overwrite cargo test -p asena-tests --test ui` after a toolchain change and read
//! every changed message.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}
