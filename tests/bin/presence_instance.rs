//! One presence instance as its own OS process, for tests/presence.rs to kill with SIGKILL:
//! the presence tests' `Lobby` at `/presence` (it tracks each socket on open in `?room=`
//! under `?key=` with `{"name": key}`), on the broker at `URL`, presence on channel prefix `PREFIX` with a
//! heartbeat of `HEARTBEAT_MS`. It serves on `127.0.0.1:0` and prints `listening PORT` on
//! stdout once it accepts connections.
//!
//!     presence-instance URL PREFIX HEARTBEAT_MS

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use asena_runtime::Asena;
use asena_runtime::presence::PresenceOptions;

#[path = "../presence_lobby.rs"]
mod presence_lobby;
use presence_lobby::Lobby;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: presence-instance URL PREFIX HEARTBEAT_MS";
    let url = args.next().context(usage)?;
    let prefix = args.next().context(usage)?;
    let heartbeat: u64 = args.next().context(usage)?.parse().context(usage)?;
    let options = PresenceOptions::default()
        .heartbeat(Duration::from_millis(heartbeat))
        .channel_prefix(prefix);
    let app = Asena::builder()
        .without_auto_registration()
        .websocket::<Lobby>()
        .transport_arc(asena_runtime::transport::from_url(&url)?)
        .presence(options)
        .build()
        .await?;
    let server = app.listen("127.0.0.1:0").await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening {}", server.local_addr().port())?;
    stdout.flush()?;
    server.run().await?;
    Ok(())
}
