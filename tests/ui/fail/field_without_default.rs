use asena_runtime::prelude::*;

struct Connection {
    url: String,
}

#[service]
struct Db {
    connection: Connection,
}

fn main() {}
