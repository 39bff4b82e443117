//! Spec first: an AsyncAPI 3 document in, a typed Asena server contract and client out.
//!
//! For each address of the document's channels (one WebSocket path), the generator writes a
//! module with:
//!
//! - `Params`: the path parameters (`/user/events/{userId}` → `user_id: String`; an `enum`
//!   becomes a Rust enum, and a server refuses any other value with 400);
//! - `ClientMessage` and `ServerMessage`: what each side sends — the payload type itself when
//!   there is one message, else an enum told apart by a constant property the payloads share
//!   (`type`, `event`, ...), or tried in order;
//! - the contract, a type implementing `asena_protocol::Channel`: a server is an ordinary
//!   `#[websocket(channel = user_events::UserEvents)]` service on it, its handlers typed,
//!   every message decoded and checked before `on_message` (one that fails goes to
//!   `on_invalid` and the client gets an error naming the JSON path and the broken rule);
//! - client functions: `client`, `publish` and `subscribe` over `asena-client`, and
//!   `publish_on` and `subscribe_on` over a tokio-tungstenite socket the application
//!   connected itself; each checks messages unless told `skip_message_validation`;
//! - `CLIENT_EXAMPLES` and `SERVER_EXAMPLES`: the document's example payloads.
//!
//! The payload types are plain structs and enums with serde, schemars and garde derives,
//! documented from the document's descriptions:
//!
//! | schema | Rust |
//! |---|---|
//! | `type: object` with `properties` | a struct; a field has the property's name where that is a Rust identifier (so a broken rule's path is the JSON path, `userId`), else a snake_case name renamed for serde; optional properties are `Option`s; `additionalProperties: false` denies unknown fields, a schema collects them into a flattened map |
//! | `type: object` with only `additionalProperties` | `BTreeMap<String, T>` |
//! | `allOf` of objects | one struct with all their properties; `allOf` of a `$ref` and annotations is the referenced type |
//! | `oneOf` / `anyOf` | an enum: internally tagged by `discriminator` or by a `const` property every branch has (left out of the branches' structs), else untagged, tried in order |
//! | `enum` / `const` of strings | a unit enum with serde renames |
//! | `type: [T, "null"]`, a `null` branch | `Option<T>` |
//! | `string`, `integer` (`u64` when `minimum >= 0`), `number`, `boolean`, `array`, `{}` | `String`, `u64`/`i64`, `f64`, `bool`, `Vec<T>`, `serde_json::Value` |
//!
//! Constraints become checks: `minLength`/`maxLength` (characters), `pattern` (ECMA-262
//! translated, checked when generating), `minimum`/`maximum` and their exclusive forms,
//! `multipleOf`, number `enum`s, `minItems`/`maxItems`, formats `email`, `uri`, `date-time`
//! and `uuid` (other formats are annotations, as JSON Schema has them by default). Anything
//! the generator cannot represent faithfully (`not`, `if`, `patternProperties`,
//! `uniqueItems`, tuple `items`, lookaround, traits, non-JSON payloads, remote `$ref`s, a
//! channel without an address) is an error naming the file and JSON pointer, never a silent
//! skip; a message no operation names is sent by neither side and generates nothing.
//!
//! # From `build.rs`
//!
//! ```no_run
//! // build.rs: `fn main` calls
//! asena_codegen::Builder::new("asyncapi.yaml").generate().expect("asyncapi.yaml");
//! ```
//!
//! ```ignore
//! // src/lib.rs
//! include!(concat!(env!("OUT_DIR"), "/asyncapi.rs"));
//! ```
//!
//! The crate then depends on `asena-protocol`, `asena-client` (unless
//! [`Builder::client`] is off), `serde` (with `derive`), `serde_json`, `schemars` and
//! `garde` (with `derive`, `serde`, `regex`, `email`, `url`).
//!
//! # From the command line
//!
//! `asena-codegen generate asyncapi.yaml --out user-events` writes a library crate that
//! builds with `cargo build`; `asena-codegen check asyncapi.yaml` lists what a document
//! holds.

mod emit;
mod model;
mod pattern;
mod source;
mod types;

use std::path::{Path, PathBuf};

pub use source::{MAX_FILE_BYTES, MAX_FILES, MAX_NESTING, MAX_REF_CHAIN, MAX_VALUES};
pub use types::{MAX_DEFS, MAX_DEPTH};

/// Why a document could not be read or generated from: the file, the JSON pointer in it
/// (empty for the whole file), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}#{pointer}: {message}", file.display())]
pub struct Error {
    /// The file.
    pub file: PathBuf,
    /// The JSON pointer in it, e.g. `/components/schemas/User/properties/age/not`.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

impl Error {
    pub(crate) fn at(file: &Path, pointer: &str, message: impl Into<String>) -> Error {
        Error {
            file: file.to_path_buf(),
            pointer: pointer.to_owned(),
            message: message.into(),
        }
    }
}

/// Generates Rust from one AsyncAPI document.
#[derive(Debug, Clone)]
pub struct Builder {
    spec: PathBuf,
    client: bool,
    rules: bool,
    out: Option<PathBuf>,
}

impl Builder {
    /// A generator for the document at `spec` (YAML, or JSON when it ends in `.json`).
    pub fn new(spec: impl Into<PathBuf>) -> Builder {
        Builder {
            spec: spec.into(),
            client: true,
            rules: true,
            out: None,
        }
    }

    /// Whether to generate the client functions (on by default; they need `asena-client`).
    pub fn client(mut self, on: bool) -> Builder {
        self.client = on;
        self
    }

    /// Leaves the schemas' constraints (lengths, ranges, patterns, formats) out of the
    /// generated types, so neither side checks them; types and required fields are still
    /// enforced by decoding. Off by default. A client can also skip checks per call
    /// (`MessageOptions::skip_message_validation`).
    pub fn skip_message_validation(mut self, skip: bool) -> Builder {
        self.rules = !skip;
        self
    }

    /// Where [`generate`](Self::generate) writes: `$OUT_DIR/<spec's stem>.rs` by default.
    pub fn out_file(mut self, path: impl Into<PathBuf>) -> Builder {
        self.out = Some(path.into());
        self
    }

    /// The generated code, formatted, as the body of a module or an `include!`.
    pub fn to_source(&self) -> Result<String, Error> {
        let (sources, api) = self.read()?;
        self.render(&sources, &api)
    }

    /// The document's files and what they say.
    fn read(&self) -> Result<(source::Sources, model::Api), Error> {
        let sources = source::Sources::load(&self.spec)?;
        let api = model::Api::read(&sources)?;
        Ok((sources, api))
    }

    /// The generated code of a document already read.
    fn render(&self, sources: &source::Sources, api: &model::Api) -> Result<String, Error> {
        let tokens = emit::file(
            sources,
            api,
            &emit::Options {
                client: self.client,
                rules: self.rules,
            },
        )?;
        let file: syn::File = syn::parse2(tokens).map_err(|e| {
            Error::at(
                &self.spec,
                "",
                format!("generated code does not parse (a bug): {e}"),
            )
        })?;
        let header = format!(
            "// Generated by asena-codegen from {}. Do not edit: change the document and generate again.\n\n",
            self.spec
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        Ok(header + &prettyplease::unparse(&file))
    }

    /// Writes the code for `include!` (from `build.rs`), tells cargo to rerun when the
    /// document changes, and returns the file written.
    pub fn generate(&self) -> Result<PathBuf, Error> {
        let out = match &self.out {
            Some(out) => out.clone(),
            None => {
                let dir = std::env::var_os("OUT_DIR").ok_or_else(|| {
                    Error::at(
                        &self.spec,
                        "",
                        "OUT_DIR is not set: call `generate` from build.rs, or set `out_file`",
                    )
                })?;
                let stem = self
                    .spec
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "asyncapi".into());
                Path::new(&dir).join(format!("{stem}.rs"))
            }
        };
        let code = self.to_source()?;
        std::fs::write(&out, code)
            .map_err(|e| Error::at(&out, "", format!("cannot write: {e}")))?;
        if std::env::var_os("OUT_DIR").is_some() {
            #[allow(clippy::print_stdout)]
            {
                println!("cargo:rerun-if-changed={}", self.spec.display());
            }
        }
        Ok(out)
    }

    /// Writes a library crate named `name` into `dir` that builds with `cargo build`: its
    /// `Cargo.toml` (with `asena_path`, a path to Asena's workspace, the dependencies on
    /// Asena's crates are path dependencies) and `src/lib.rs`.
    pub fn write_crate(
        &self,
        dir: &Path,
        name: &str,
        asena_path: Option<&Path>,
    ) -> Result<(), Error> {
        let (sources, api) = self.read()?;
        let code = self.render(&sources, &api)?;
        let mut lib = String::new();
        lib.push_str(&format!(
            "//! {} {}: the typed contract and client generated from its AsyncAPI document.\n",
            api.title, api.version
        ));
        if let Some(d) = &api.description {
            lib.push_str("//!\n");
            for line in d.lines() {
                lib.push_str(&format!("//! {}\n", line.trim_end()).replace("//! \n", "//!\n"));
            }
        }
        lib.push('\n');
        lib.push_str(&code);
        let dep = |krate: &str| match asena_path {
            Some(p) => format!(
                "{krate} = {{ path = {:?} }}",
                p.join(krate).display().to_string()
            ),
            None => format!("{krate} = \"0.1\""),
        };
        let client = if self.client {
            dep("asena-client") + "\n"
        } else {
            String::new()
        };
        let manifest = format!(
            "[package]\nname = {name:?}\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\n{}\n{client}serde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\n\
             schemars = \"1\"\ngarde = {{ version = \"0.22\", default-features = false, features = [\"derive\", \"serde\", \"regex\", \"email\", \"url\"] }}\n\n\
             # A crate of its own, also when generated inside another workspace.\n[workspace]\n",
            dep("asena-protocol")
        );
        let write = |path: PathBuf, text: &str| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::at(parent, "", format!("cannot create: {e}")))?;
            }
            std::fs::write(&path, text)
                .map_err(|e| Error::at(&path, "", format!("cannot write: {e}")))
        };
        write(dir.join("Cargo.toml"), &manifest)?;
        write(dir.join("src/lib.rs"), &lib)?;
        Ok(())
    }

    /// What the document holds: endpoints, their operations and messages, one per line.
    pub fn check(&self) -> Result<String, Error> {
        let (sources, api) = self.read()?;
        // Generating is the full check: every schema must map to a type.
        self.render(&sources, &api)?;
        let mut out = format!("{} {}\n", api.title, api.version);
        for e in &api.endpoints {
            out.push_str(&format!(
                "endpoint {} at {} (channels: {})\n",
                e.name,
                e.path,
                e.channels.join(", ")
            ));
            for p in &e.params {
                match &p.values {
                    Some(v) => {
                        out.push_str(&format!("  param {} (one of {} values)\n", p.name, v.len()))
                    }
                    None => out.push_str(&format!("  param {}\n", p.name)),
                }
            }
            for o in &e.operations {
                let action = match o.action {
                    model::Action::Send => "send",
                    model::Action::Receive => "receive",
                };
                out.push_str(&format!(
                    "  operation {} ({action}) on {}: {}",
                    o.name,
                    o.channel,
                    o.messages.join(", ")
                ));
                if !o.reply.is_empty() {
                    out.push_str(&format!("; reply: {}", o.reply.join(", ")));
                }
                out.push('\n');
            }
            let names = |list: &[model::Msg]| {
                list.iter()
                    .map(|m| m.key.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!("  clients send: {}\n", names(&e.receives)));
            out.push_str(&format!("  the server sends: {}\n", names(&e.sends)));
        }
        Ok(out)
    }
}
