// A contract as `asena-codegen` generates one, and an untyped service `Service` that a
// fixture declares on it.

struct Contract;

impl asena_runtime::Channel for Contract {
    const PATH: &'static str = "/c";
    const NAME: &'static str = "Contract";
    type Params = ();
    type In = Message;
    type Out = asena_runtime::Raw;
}

impl WebSocketService for Service {
    type Data = ();
    async fn on_message(&self, _: &Socket<Self>, _: Message) -> Result<()> {
        Ok(())
    }
}

fn main() {}
