//! Serving over TCP: [`Asena::listen`] binds, [`Server`] runs the accept loop, each
//! connection is served by hyper with upgrades, and graceful shutdown ends them all.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;
use tower_service::Service;

use super::{Asena, Error};

impl Asena {
    /// Binds `addr` and returns the server, not yet running.
    pub async fn listen(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Server, Error> {
        let text = addr.to_string();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr: text, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Io { addr: None, source })?;
        if let Some(fleet) = &self.inner.fleet {
            fleet.set_addr(local_addr);
        }
        Ok(Server {
            app: self.clone(),
            listener,
            local_addr,
        })
    }

    /// Serves on `addr` until Ctrl-C, SIGTERM or [`shutdown`](Self::shutdown), then shuts
    /// down gracefully.
    pub async fn serve(self, addr: impl ToSocketAddrs + std::fmt::Display) -> Result<(), Error> {
        let server = self.listen(addr).await?;
        tracing::info!(target: "asena::ws", addr = %server.local_addr(), "listening");
        server.run_until(termination_signal()).await
    }
}

async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A bound server; [`run`](Server::run) serves until the app shuts down.
#[derive(Debug)]
pub struct Server {
    app: Asena,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl Server {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until [`Asena::shutdown`] is called.
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `signal` completes or [`Asena::shutdown`] is called, then shuts down
    /// gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let Server { app, listener, .. } = self;
        let mut stop = app.inner.shutdown.subscribe();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                _ = stopped(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve_http(stream, remote, app.inner.router.clone(), app.inner.shutdown.subscribe()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: log, back off, keep serving.
                        tracing::error!(target: "asena::ws", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        app.shutdown().await;
        Ok(())
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn serve_http(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let mut router = router.clone();
        async move {
            let resp: Result<_, Infallible> = router.call(req.map(Body::new)).await;
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // hyper's read buffer, at most (its default is about 400 KiB); a head it reads
        // whole may still pass this by one read, and the upgrade refuses it then.
        .max_buf_size(crate::request::MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(target: "asena::ws", error = %e, "http connection error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
