// A typed service's Ulak sends only its `sends` type.
use asena_runtime::prelude::*;

include!("../common/typed_service.rs");

fn handle(_ws: &Socket<Typed>) -> Result<()> {
    Ok(())
}

fn from_a_service(ulak: Ulak<Typed>) {
    let _ = ulak.to("room", Other { n: 2 });
}
