use asena_runtime::prelude::*;

#[service(name = "")]
struct UserService;

fn main() {}
