use asena_runtime::prelude::*;

#[service]
struct Cache<T> {
    items: Vec<T>,
}

fn main() {}
