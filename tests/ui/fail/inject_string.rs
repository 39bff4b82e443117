use asena_runtime::prelude::*;

#[service]
struct Greeter {
    #[inject]
    greeting: String,
}

fn main() {}
