//! What the client's integration tests share: an Asena app served on 127.0.0.1, the bound on
//! every wait, and a backoff that reconnects soon.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use asena_client::Backoff;
use asena_runtime::{Asena, AsenaBuilder};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Reconnection attempts after 20 ms, then doubling up to 200 ms.
pub fn soon() -> Backoff {
    Backoff::exponential(Duration::from_millis(20), Duration::from_millis(200))
}

/// An app served by a test.
pub struct Server {
    pub app: Asena,
    pub addr: SocketAddr,
    task: JoinHandle<Result<(), asena_runtime::Error>>,
}

impl Server {
    /// Builds `app` and serves it on `addr` (`127.0.0.1:0` for any port).
    pub async fn serve(app: AsenaBuilder, addr: &str) -> Server {
        let app = app.build().await.unwrap();
        let server = app.listen(addr).await.unwrap();
        let addr = server.local_addr();
        Server {
            app,
            addr,
            task: tokio::spawn(server.run()),
        }
    }

    /// `ws://` and the address.
    pub fn base(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Shuts down (sockets closed with 1001) and waits until the port is free; returns the
    /// address, to start a server on again.
    pub async fn stop(self) -> SocketAddr {
        timeout(WAIT, self.app.shutdown()).await.unwrap();
        timeout(WAIT, self.task).await.unwrap().unwrap().unwrap();
        self.addr
    }
}
