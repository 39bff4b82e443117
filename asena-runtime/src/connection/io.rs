//! Raw socket I/O shared by a connection's loops and the flushers: the upgraded stream
//! ([`Io`]), reading without holding a buffer while idle, and non-blocking writes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::Conn;

/// Read size per syscall.
const READ_CHUNK: usize = 16 * 1024;

/// The upgraded transport of a connection.
pub(crate) enum Io {
    /// A plain TCP stream (our own server): split without locks; reads need no buffer while
    /// idle.
    Tcp { stream: TcpStream, leftover: Bytes },
    /// Anything else hyper upgraded (e.g. when the router is served by the user's server).
    Other(TokioIo<Upgraded>),
}

/// Where the reader gets bytes from. A poll, not a future: the reader waits on its socket,
/// its wake-up signal and (when closing) a timer in one `poll_fn`, so an idle connection
/// holds no read future.
pub(crate) trait Source: Send {
    /// Appends what the socket has to `buf`; `Ok(0)` is the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;
}

/// The read side of a connection's plain TCP stream (which the connection holds).
pub(crate) struct TcpSource(pub(crate) Arc<Conn>);

/// The connection's TCP stream; attached before its reader and writer start.
fn stream(conn: &Conn) -> io::Result<&TcpStream> {
    conn.stream()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no TCP stream attached"))
}

impl Source for TcpSource {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        loop {
            // Wait for readiness without holding a buffer, so idle sockets cost no read memory.
            // `poll_read_ready` (not `readable()`) stores our waker in the stream's read slot,
            // which drops the waker hyper left there when it read the upgrade request: that
            // stale waker would keep hyper's finished connection task (~1.1 KB) allocated for
            // as long as the socket stays idle.
            let stream = stream(&self.0)?;
            ready!(stream.poll_read_ready(cx))?;
            match try_read_into(stream, buf) {
                // The readiness was stale (tokio cleared it): wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

fn try_read_into(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let mut chunk = [0u8; READ_CHUNK];
    let n = stream.try_read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Where the writer puts bytes.
pub(crate) trait Sink: Send {
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Sends FIN after our close frame.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// The write side of a plain TCP stream, shared with the flushers (never both at once: the
/// outbox says who owns the socket).
pub(crate) struct TcpSink(pub(crate) Arc<Conn>);

impl Sink for TcpSink {
    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        loop {
            let stream = stream(&self.0)?;
            let (n, stopped) = try_write_some(stream, buf);
            buf = &buf[n..];
            match stopped {
                None => return Ok(()),
                Some(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
                Some(e) => return Err(e),
            }
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        socket2::SockRef::from(stream(&self.0)?).shutdown(std::net::Shutdown::Write)
    }
}

/// Writes as much of `buf` as the socket takes without waiting. Returns how many bytes went
/// out and, unless that is all of them, the error that stopped it (`WouldBlock` when the send
/// buffer is full).
pub(crate) fn try_write_some(stream: &TcpStream, buf: &[u8]) -> (usize, Option<io::Error>) {
    let mut at = 0;
    while at < buf.len() {
        match stream.try_write(&buf[at..]) {
            Ok(0) => return (at, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (at, Some(e)),
        }
    }
    (at, None)
}

impl<W: AsyncWrite + Unpin + Send> Sink for W {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(self, buf).await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        AsyncWriteExt::shutdown(self).await
    }
}

pub(crate) struct BufferedSource<R>(pub(crate) R);

impl<R: AsyncRead + Unpin + Send> Source for BufferedSource<R> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut read = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    }
}
