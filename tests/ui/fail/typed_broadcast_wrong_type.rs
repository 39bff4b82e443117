// A typed service's namespace sends only its `sends` type, not any JSON.
use asena_runtime::prelude::*;

include!("../common/typed_service.rs");

fn handle(ws: &Socket<Typed>) -> Result<()> {
    ws.namespace().broadcast(json!({"type": "Pong"}))?;
    Ok(())
}
