use asena_runtime::prelude::*;

struct Plain;

#[service]
struct Greeter {
    #[inject]
    plain: Arc<Plain>,
}

fn main() {}
