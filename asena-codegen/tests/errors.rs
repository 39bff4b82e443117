//! What the generator refuses, and how: every error names the file and the JSON pointer of
//! what it cannot represent, never a panic or a silent skip.

use std::path::Path;

mod support;

use support::document;

fn error_of(path: &Path) -> asena_codegen::Error {
    asena_codegen::Builder::new(path)
        .to_source()
        .expect_err("the document is refused")
}

const HEAD: &str = "asyncapi: 3.0.0\ninfo: {title: T, version: '1'}\n";

fn with_payload(name: &str, payload: &str) -> asena_codegen::Error {
    let text = format!(
        "{HEAD}channels:\n  c:\n    address: /c\n    messages:\n      m:\n        payload: {payload}\n\
         operations:\n  o:\n    action: receive\n    channel: {{$ref: '#/channels/c'}}\n"
    );
    error_of(&document(name, &text))
}

#[test]
fn unsupported_keywords_name_their_pointer() {
    let e = with_payload(
        "not.yaml",
        "{type: object, properties: {a: {not: {type: string}}}}",
    );
    assert_eq!(e.pointer, "/channels/c/messages/m/payload/properties/a/not");
    assert!(e.message.contains("`not` is not supported"), "{e}");

    let e = with_payload("unique.yaml", "{type: array, uniqueItems: true}");
    assert_eq!(e.pointer, "/channels/c/messages/m/payload/uniqueItems");

    let e = with_payload("lookahead.yaml", "{type: string, pattern: '(?=a)b'}");
    assert_eq!(e.pointer, "/channels/c/messages/m/payload/pattern");
    assert!(e.message.contains("lookaround"), "{e}");
}

#[test]
fn only_asyncapi_3_documents_are_read() {
    let e = error_of(&document(
        "v2.yaml",
        "asyncapi: 2.6.0\ninfo: {title: T, version: '1'}\n",
    ));
    assert_eq!(e.pointer, "/asyncapi");
    assert!(e.message.contains("3.0 or 3.1"), "{e}");
}

#[test]
fn broken_references_are_errors() {
    let e = with_payload("dangling.yaml", "{$ref: '#/components/schemas/Missing'}");
    assert_eq!(e.pointer, "/components/schemas/Missing");
    assert!(e.message.contains("nothing at this pointer"), "{e}");

    let e = with_payload("missing-file.yaml", "{$ref: 'nowhere.yaml#/A'}");
    assert!(e.message.contains("cannot read"), "{e}");

    let e = with_payload("remote.yaml", "{$ref: 'https://example.com/a.yaml#/A'}");
    assert!(
        e.message.contains("remote references are not supported"),
        "{e}"
    );

    let cycle = format!(
        "{HEAD}channels:\n  c:\n    address: /c\n    messages:\n      m: {{$ref: '#/components/messages/a'}}\n\
         components:\n  messages:\n    a: {{$ref: '#/components/messages/b'}}\n    b: {{$ref: '#/components/messages/a'}}\n"
    );
    let e = error_of(&document("cycle.yaml", &cycle));
    assert!(e.message.contains("`$ref`s in a row"), "{e}");
}

#[test]
fn operations_name_messages_of_their_channel() {
    let text = format!(
        "{HEAD}channels:\n  c:\n    address: /c\n    messages:\n      m: {{payload: {{type: string}}}}\n  d:\n    address: /d\n    messages:\n      n: {{payload: {{type: string}}}}\n\
         operations:\n  o:\n    action: send\n    channel: {{$ref: '#/channels/c'}}\n    messages: [{{$ref: '#/channels/d/messages/n'}}]\n"
    );
    let e = error_of(&document("foreign.yaml", &text));
    assert_eq!(e.pointer, "/operations/o/messages/0");
    assert!(
        e.message.contains("not a message of the channel `c`"),
        "{e}"
    );
}

#[test]
fn addresses_must_be_servable_paths() {
    let text = format!("{HEAD}channels:\n  c:\n    address: 'a.b/{{id}}'\n");
    let e = error_of(&document("dotted.yaml", &text));
    assert_eq!(e.pointer, "/channels/c/address");

    let text = format!(
        "{HEAD}channels:\n  c:\n    address: '/a/{{id}}'\n    parameters:\n      other: {{}}\n"
    );
    let e = error_of(&document("param.yaml", &text));
    assert_eq!(e.pointer, "/channels/c/parameters/other");
}

#[test]
fn oversized_and_deep_documents_are_refused_before_generating() {
    let big = "#".repeat((asena_codegen::MAX_FILE_BYTES + 1) as usize);
    let e = error_of(&document("big.yaml", &big));
    assert!(e.message.contains("the limit is"), "{e}");

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let e = error_of(&document("deep.json", &deep));
    assert!(
        e.message.contains("not valid JSON") || e.message.contains("nest deeper"),
        "{e}"
    );

    let nested = format!(
        "{{\"asyncapi\":\"3.0.0\",\"x\":{}1{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    let e = error_of(&document("nested.json", &nested));
    assert!(e.message.contains("nest deeper than 64"), "{e}");
}

#[test]
fn the_cli_fails_with_the_file_and_pointer() {
    let spec = document(
        "bad.yaml",
        &format!(
            "{HEAD}channels:\n  c:\n    address: /c\n    messages:\n      m: {{payload: {{type: object, properties: {{a: {{if: {{}}}}}}}}}}\n\
             operations:\n  o: {{action: send, channel: {{$ref: '#/channels/c'}}}}\n"
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_asena-codegen"))
        .arg("check")
        .arg(&spec)
        .output()
        .expect("run asena-codegen");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "bad.yaml#/channels/c/messages/m/payload/properties/a/if: `if` is not supported"
        ),
        "{err}"
    );
}
