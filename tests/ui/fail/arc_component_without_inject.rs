#![deny(deprecated)]

use asena_runtime::prelude::*;

#[service]
#[derive(Default)]
struct Tokens;

#[service]
struct Users {
    // Forgot #[inject]: this would be a private Tokens, not the app's shared one.
    tokens: Arc<Tokens>,
    // Shared state that is not a component is fine without #[inject].
    cache: Arc<std::sync::Mutex<Vec<String>>>,
}

fn main() {}
