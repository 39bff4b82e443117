// A typed service's socket sends only its `sends` type.
use asena_runtime::prelude::*;

include!("../common/typed_service.rs");

fn handle(ws: &Socket<Typed>) -> Result<()> {
    ws.send(&Other { n: 1 })?;
    Ok(())
}
