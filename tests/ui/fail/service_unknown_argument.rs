use asena_runtime::prelude::*;

#[service(path = "/users")]
struct UserService;

fn main() {}
