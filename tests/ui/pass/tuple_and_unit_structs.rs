use asena_runtime::prelude::*;
use asena_runtime::Asena;

#[service]
struct Leaf;

#[service]
struct Pair(#[inject] Arc<Leaf>, u32);

#[websocket(path = "/tuple")]
struct TupleSocket(#[inject] Arc<Pair>);

impl WebSocketService for TupleSocket {
    type Data = ();
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        let _ = &self.0;
        Ok(())
    }
}

include!("../common/run_app.rs");

fn main() {
    run_app(async |app| {
        let pair = app.get::<Pair>().expect("Pair");
        let leaf = app.get::<Leaf>().expect("Leaf");
        assert!(Arc::ptr_eq(&pair.0, &leaf));
        assert_eq!(pair.1, 0);
    });
}
