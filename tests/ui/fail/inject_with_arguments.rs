use asena_runtime::prelude::*;

#[service]
struct Tokens;

#[service]
struct Greeter {
    #[inject(name = "tokens")]
    tokens: Arc<Tokens>,
}

fn main() {}
