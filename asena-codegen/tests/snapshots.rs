//! The generated code for the seed's User Service document and two corpus documents, kept in
//! `tests/snapshots/`: a change to the generator shows here as a diff to review.
//! `ASENA_BLESS=1 cargo test -p asena-codegen --test snapshots` rewrites them.

use std::path::Path;

mod support;

fn snapshot(spec: &str, name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let code = asena_codegen::Builder::new(root.join(spec))
        .to_source()
        .unwrap_or_else(|e| panic!("{spec}: {e}"));
    let path = root.join("tests/snapshots").join(format!("{name}.rs.snap"));
    if std::env::var_os("ASENA_BLESS").is_some() {
        std::fs::write(&path, &code).expect("write the snapshot");
        return;
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    if kept != code {
        let first = kept
            .lines()
            .zip(code.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(kept.lines().count().min(code.lines().count()));
        panic!(
            "{name}: the generated code differs from {} from line {} on:\n  kept:      {:?}\n  generated: {:?}\n\
             review it, then bless with `ASENA_BLESS=1 cargo test -p asena-codegen --test snapshots`",
            path.display(),
            first + 1,
            kept.lines().nth(first).unwrap_or("<end>"),
            code.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

#[test]
fn the_user_service() {
    snapshot("../examples/user-events/asyncapi.yaml", "user-events");
}

#[test]
fn gemini_market_data() {
    snapshot("tests/corpus/websocket-gemini-asyncapi.yml", "gemini");
}

#[test]
fn kraken_request_reply_over_channels() {
    snapshot(
        "tests/corpus/kraken-websocket-request-reply-multiple-channels-asyncapi.yml",
        "kraken-channels",
    );
}

#[test]
fn a_parameter_enum_does_not_take_the_modules_own_names() {
    let spec = support::document(
        "params.yaml",
        "asyncapi: 3.0.0\ninfo: {title: T, version: '1'}\nchannels:\n  c:\n    address: '/c/{params}'\n    parameters:\n      params: {enum: [a, b]}\n",
    );
    let code = asena_codegen::Builder::new(&spec)
        .to_source()
        .expect("generates");
    assert!(code.contains("pub enum ParamsValue"), "{code}");
    assert!(code.contains("pub params: ParamsValue"), "{code}");
    syn::parse_file(&code).expect("the code parses");
}

#[test]
fn an_integer_bounded_by_its_own_type_has_no_range() {
    // What the server's documents say of a request's or reply's id: 0 to u64::MAX.
    let spec = support::document(
        "ids.yaml",
        "asyncapi: 3.0.0\ninfo: {title: T, version: '1'}\nchannels:\n  c:\n    address: /c\n    messages:\n      m:\n        payload:\n          type: object\n          required: [id, small, signed]\n          properties:\n            id: {type: integer, minimum: 0, maximum: 18446744073709551615}\n            small: {type: integer, minimum: 0, maximum: 10}\n            signed: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}\noperations:\n  o:\n    action: send\n    channel: {$ref: '#/channels/c'}\n",
    );
    let code = asena_codegen::Builder::new(&spec)
        .to_source()
        .expect("generates");
    assert!(code.contains("pub id: u64"), "{code}");
    assert!(!code.contains("18446744073709551615"), "{code}");
    assert!(!code.contains("9223372036854775807"), "{code}");
    assert!(code.contains("range(max = 10)"), "{code}");
    syn::parse_file(&code).expect("the code parses");
}
