//! `asena-codegen`: AsyncAPI 3 documents to typed Asena code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Typed Asena servers and clients from AsyncAPI 3 documents.
#[derive(Debug, Parser)]
#[command(name = "asena-codegen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes a library crate generated from SPEC into --out.
    Generate {
        /// The AsyncAPI document (YAML, or JSON ending in `.json`).
        spec: PathBuf,
        /// The crate's directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The crate's name (default: the directory's name).
        #[arg(long)]
        crate_name: Option<String>,
        /// Asena's workspace: depend on its crates by path instead of by version.
        #[arg(long)]
        asena_path: Option<PathBuf>,
        /// Leave out the client functions (and the dependency on asena-client).
        #[arg(long)]
        no_client: bool,
        /// Leave the schemas' constraints out of the types.
        #[arg(long)]
        skip_message_validation: bool,
    },
    /// Validates SPEC and lists its endpoints, operations and messages.
    Check {
        /// The AsyncAPI document.
        spec: PathBuf,
    },
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Generate {
            spec,
            out,
            crate_name,
            asena_path,
            no_client,
            skip_message_validation,
        } => {
            let name = crate_name.unwrap_or_else(|| {
                out.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "asyncapi".into())
            });
            let asena_path = asena_path.map(|p| std::fs::canonicalize(&p).unwrap_or(p));
            asena_codegen::Builder::new(&spec)
                .client(!no_client)
                .skip_message_validation(skip_message_validation)
                .write_crate(&out, &name, asena_path.as_deref())
                .map(|()| format!("wrote the crate `{name}` to {}", out.display()))
        }
        Command::Check { spec } => asena_codegen::Builder::new(&spec).check(),
    };
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
