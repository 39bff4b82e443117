use asena_runtime::prelude::*;

/// A contract as `asena-codegen` generates one.
struct Contract;

impl asena_runtime::Channel for Contract {
    const PATH: &'static str = "/c";
    const NAME: &'static str = "Contract";
    type Params = ();
    type In = Message;
    type Out = asena_runtime::Raw;
}

// The contract has the path: declaring one again is a mistake.
#[websocket(channel = Contract, path = "/c")]
struct Twice;

macro_rules! untyped {
    ($($name:ident),*) => {$(
        impl WebSocketService for $name {
            type Data = ();
            async fn on_message(&self, _: &Socket<Self>, _: Message) -> Result<()> {
                Ok(())
            }
        }
    )*};
}
untyped!(Twice);

fn main() {}
