//! `crate = path` lets a re-exporting crate name the runtime.
mod reexport {
    pub use asena_runtime as rt;
}

#[asena_runtime::service(crate = crate::reexport::rt)]
struct Renamed;

fn main() {
    let _ = Renamed;
}
