//! Generates the User Service's contract and client from `asyncapi.yaml` into `OUT_DIR`.

fn main() {
    if let Err(error) = asena_codegen::Builder::new("asyncapi.yaml").generate() {
        // The document is ours: a generation error is a bug to fix, named precisely.
        panic!("asyncapi.yaml: {error}");
    }
}
