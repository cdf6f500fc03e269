//! The Kafka listener: accepts connections, reads size-prefixed frames,
//! dispatches requests, and writes responses in request order.
//!
//! ```text
//!  socket ─▶ reader ──(request)──▶ tokio::spawn(handler) ─┐
//!              │                                          │ JoinHandle, in order
//!              └──────────────▶ bounded queue ────────────┴─▶ writer ─▶ socket
//! ```
//! Requests on one connection are handled concurrently (a produce waiting on
//! its flush does not hold up the parse of the next request), but their
//! responses go out in the order the requests came, as Kafka requires.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::handlers::{self, Dispatch};

/// How many requests of one connection may be in flight at once; Kafka
/// clients pipeline up to 5 by default (`max.in.flight.requests.per.connection`).
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// The smallest request: api key, api version, correlation id.
const MIN_REQUEST_LEN: i32 = 8;

/// Serves Kafka clients on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        serve_connection(stream, peer, broker, shutdown).await;
                    });
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    // Out of file descriptors and the like: give the system a moment.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

type Pending = JoinHandle<Result<Option<Bytes>, String>>;

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    broker.metrics.connections.inc();
    let (read_half, mut write_half) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT_PER_CONNECTION);
    let writer = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            match pending.await {
                Ok(Ok(Some(bytes))) => {
                    if let Err(error) = write_half.write_all(&bytes).await {
                        debug!(%peer, %error, "write to client failed");
                        return;
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(why)) => {
                    warn!(%peer, %why, "closing connection");
                    return;
                }
                Err(error) => {
                    warn!(%peer, %error, "request handler failed; closing connection");
                    return;
                }
            }
        }
        let _ = write_half.shutdown().await;
    });
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let max_request = broker.settings.get_i64("socket.request.max.bytes");
    loop {
        let frame = tokio::select! {
            () = shutdown.cancelled() => break,
            frame = read_frame(&mut reader, max_request) => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(why) => {
                warn!(%peer, %why, "closing connection: bad frame");
                broker.metrics.bad_requests.inc();
                break;
            }
        };
        match handlers::dispatch(&broker, frame, peer) {
            Dispatch::Respond(fut) => {
                if tx.send(spawn(fut)).await.is_err() {
                    break;
                }
            }
            Dispatch::Close(why) => {
                warn!(%peer, %why, "closing connection");
                broker.metrics.bad_requests.inc();
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    broker.metrics.connections.dec();
}

fn spawn<F>(fut: F) -> Pending
where
    F: Future<Output = Result<Option<Bytes>, String>> + Send + 'static,
{
    tokio::spawn(fut)
}

/// Reads one size-prefixed frame; `Ok(None)` on a clean end of stream.
async fn read_frame<R>(reader: &mut R, max_request: i64) -> Result<Option<BytesMut>, String>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read failed: {e}")),
    };
    if size < MIN_REQUEST_LEN {
        return Err(format!(
            "request size {size} is below the minimum {MIN_REQUEST_LEN}"
        ));
    }
    if i64::from(size) > max_request {
        return Err(format!(
            "request size {size} exceeds socket.request.max.bytes {max_request}"
        ));
    }
    let mut buf = BytesMut::zeroed(size as usize);
    reader
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("truncated request of declared size {size}: {e}"))?;
    Ok(Some(buf))
}

/// Logs the listener address once bound.
pub fn announce(addr: SocketAddr) {
    info!(%addr, "kafka listener ready");
}
