//! Generates Rust from AsyncAPI documents for the spec-first tests: each example app's own
//! document (`fixtures/asyncapi/`, kept equal to what the app prints by `tests/codegen.rs`)
//! and the public documents of `asena-codegen/tests/corpus/`.

use std::path::Path;

const DOCUMENTS: &[(&str, &str)] = &[
    ("chat", "fixtures/asyncapi/chat.json"),
    ("auth", "fixtures/asyncapi/auth.json"),
    ("notifications", "fixtures/asyncapi/notifications.json"),
    ("echo", "fixtures/asyncapi/echo.json"),
    ("realtime", "fixtures/asyncapi/realtime.json"),
    ("bench_server", "fixtures/asyncapi/bench_server.json"),
    (
        "gemini",
        "../asena-codegen/tests/corpus/websocket-gemini-asyncapi.yml",
    ),
    (
        "kraken_filter",
        "../asena-codegen/tests/corpus/kraken-websocket-request-reply-message-filter-in-reply-asyncapi.yml",
    ),
    (
        "kraken_channels",
        "../asena-codegen/tests/corpus/kraken-websocket-request-reply-multiple-channels-asyncapi.yml",
    ),
    (
        "slack",
        "../asena-codegen/tests/corpus/slack-rtm-asyncapi.yml",
    ),
    (
        "social_frontend",
        "../asena-codegen/tests/corpus/social-media/frontend/asyncapi.yaml",
    ),
];

fn main() {
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=../asena-codegen/tests/corpus");
    for (name, spec) in DOCUMENTS {
        println!("cargo:rerun-if-changed={spec}");
        let file = Path::new(&out).join(format!("codegen_{name}.rs"));
        if let Err(error) = asena_codegen::Builder::new(spec).out_file(&file).generate() {
            panic!("{spec}: {error}");
        }
    }
}
