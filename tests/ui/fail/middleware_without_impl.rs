use asena_runtime::prelude::*;

#[middleware]
struct Auth;

fn main() {}
