use asena_runtime::prelude::*;

#[service]
enum Mode {
    Fast,
    Slow,
}

fn main() {
    let _ = Mode::Fast;
    let _ = Mode::Slow;
}
