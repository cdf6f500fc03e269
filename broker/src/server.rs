//! The Kafka listener: accepts connections, reads size-prefixed frames,
//! dispatches requests, and writes responses in request order.
//!
//! ```text
//!  socket ─▶ reader: frame, decode ──▶ bounded queue of handlers ──▶ runner ─▶ socket
//! ```
//! The reader decodes ahead; the runner executes one connection's requests
//! one at a time, in arrival order, so pipelined produce requests are
//! appended in the order sent (an idempotent producer's sequences depend on
//! it). A produce is done running once appended: its acknowledgement (which
//! may wait for the in-sync replicas) goes to the writer, which sends
//! responses in request order, as Kafka does per connection, while the
//! runner goes on with the next request.
//!
//! ```text
//!  reader ─▶ [handlers] ─▶ runner: run in order ─▶ [answers] ─▶ writer: await in order ─▶ socket
//! ```
//! On an SSL or SASL_SSL listener the connection starts with a TLS
//! handshake (see `tls`), and the reader and writer work through the TLS
//! session instead of the bare socket.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::acl;
use crate::broker::Broker;
use crate::config::BrokerSettings;
use crate::handlers::{self, Answer, Dispatch, Step};
use crate::outgoing::Sink;
use crate::tls::ServerTls;

/// How many requests of one connection may be in flight at once; Kafka
/// clients pipeline up to 5 by default (`max.in.flight.requests.per.connection`).
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// The smallest request: api key, api version, correlation id.
const MIN_REQUEST_LEN: i32 = 8;

/// How long a client gets to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The first byte of a TLS connection: a handshake record's content type.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves Kafka clients on `listener` until `shutdown` is cancelled, over
/// TLS when `tls` is given.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        serve_connection(stream, peer, broker, tls, shutdown).await;
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

/// Sets a connection's send buffer (`SO_SNDBUF`) from
/// `socket.send.buffer.bytes`, as Kafka does; -1 leaves the system's
/// default, which the kernel grows with the connection.
fn size_send_buffer(stream: &TcpStream, settings: &BrokerSettings) -> std::io::Result<()> {
    match usize::try_from(settings.get_i64("socket.send.buffer.bytes")) {
        Ok(bytes) if bytes > 0 => socket2::SockRef::from(stream).set_send_buffer_size(bytes),
        _ => Ok(()),
    }
}

/// A decoded request's handler, not yet run.
type Pending = Pin<Box<dyn Future<Output = Result<Step, String>> + Send>>;

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    if let Err(error) = size_send_buffer(&stream, &broker.settings) {
        debug!(%peer, %error, "could not set the send buffer size");
    }
    broker.metrics.connections.inc();
    match tls {
        None => {
            let (read_half, write_half) = stream.into_split();
            let reader = BufReader::with_capacity(64 * 1024, read_half);
            let principal = acl::ANONYMOUS.to_string();
            serve(
                reader,
                Sink::Plain(write_half),
                peer,
                principal,
                &broker,
                shutdown,
            )
            .await;
        }
        Some(tls) => {
            if let Some(session) = handshake(stream, &tls, peer, &broker, &shutdown).await {
                if let Some(principal) = certificate_principal(&session, &broker, peer) {
                    let (read_half, write_half) = tokio::io::split(session);
                    let reader = BufReader::with_capacity(64 * 1024, read_half);
                    let sink = Sink::Tls(Box::new(write_half));
                    serve(reader, sink, peer, principal, &broker, shutdown).await;
                }
            }
        }
    }
    broker.metrics.connections.dec();
}

/// A TLS client's principal: `User:` and its certificate's subject, as
/// `ssl.principal.mapping.rules` maps it; ANONYMOUS without a certificate.
/// `None` when no rule maps the subject: Kafka refuses such a client.
fn certificate_principal(
    session: &tokio_rustls::server::TlsStream<TcpStream>,
    broker: &Broker,
    peer: SocketAddr,
) -> Option<String> {
    let Some(certificate) = session
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    else {
        return Some(acl::ANONYMOUS.to_string());
    };
    let Some(subject) = crate::principal::subject_dn(certificate) else {
        warn!(%peer, "the client certificate's subject could not be read; closing the connection");
        return None;
    };
    match broker.principal_rules.apply(&subject) {
        Some(name) => Some(format!("User:{name}")),
        None => {
            warn!(%peer, %subject, "no ssl.principal.mapping.rules rule matches the client certificate's subject; closing the connection");
            None
        }
    }
}

/// The TLS handshake of a new connection; `None` (counted and logged) when
/// it fails or takes too long.
async fn handshake(
    stream: TcpStream,
    tls: &ServerTls,
    peer: SocketAddr,
    broker: &Broker,
    shutdown: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let (config, reload_error) = tls.config();
    if reload_error.is_some() {
        broker.metrics.tls_reload_failures.inc();
    }
    let handshake = async {
        // A connection closed before its first byte is a port probe (a
        // load balancer's or Kubernetes' tcpSocket check), not a failed
        // handshake; a first byte other than a TLS handshake record's is
        // most likely a client without TLS.
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                return Err(std::io::Error::other(
                    "the client does not speak TLS (a PLAINTEXT client on an SSL listener?)",
                ))
            }
            Ok(_) => {}
        }
        tokio_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await
            .map(Some)
    };
    let outcome = tokio::select! {
        () = shutdown.cancelled() => return None,
        outcome = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake) => outcome,
    };
    match outcome {
        // Closed before its first byte: nothing to count.
        Ok(Ok(None)) => None,
        Ok(Ok(Some(session))) => Some(session),
        Ok(Err(error)) => {
            broker.metrics.tls_handshake_failures.inc();
            info!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            broker.metrics.tls_handshake_failures.inc();
            info!(%peer, "TLS handshake not done within {TLS_HANDSHAKE_TIMEOUT:?}");
            None
        }
    }
}

/// Serves one connection's requests: authentication first where the
/// listener asks for it, then every request until the client leaves.
async fn serve<R>(
    mut reader: R,
    mut write_half: Sink,
    peer: SocketAddr,
    mut principal: String,
    broker: &Arc<Broker>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin,
{
    let max_request = broker.settings.get_i64("socket.request.max.bytes");
    if crate::sasl::required(&broker.settings) {
        let authenticated = tokio::select! {
            () = shutdown.cancelled() => Err("shutting down".to_string()),
            outcome = tokio::time::timeout(
                crate::sasl::AUTHENTICATION_TIMEOUT,
                crate::sasl::authenticate(broker, &mut reader, &mut write_half, peer, max_request),
            ) => outcome.unwrap_or_else(|_| Err("no authentication within the time allowed".into())),
        };
        match authenticated {
            Ok(user) => principal = format!("User:{user}"),
            Err(why) => {
                debug!(%peer, %why, "closing unauthenticated connection");
                write_half.shutdown().await;
                return;
            }
        }
    }
    let session = Arc::new(acl::Session::new(principal, peer));
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT_PER_CONNECTION);
    let (answers_tx, mut answers) = mpsc::channel::<Answer>(MAX_IN_FLIGHT_PER_CONNECTION);
    // A hold ends early at shutdown.
    let held_until = shutdown.clone();
    let runner = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            // One request at a time, in arrival order, as Kafka does per
            // connection: a produce is appended before the next request on
            // the connection is looked at, so pipelined batches (and an
            // idempotent producer's sequences) land in the order sent.
            let (step, hold) = match pending.await {
                Ok(Step::Held(step, hold)) => (Ok(*step), hold),
                other => (other, std::time::Duration::ZERO),
            };
            let answer: Answer = match step {
                Ok(Step::Done(bytes)) => Box::pin(std::future::ready(Ok(bytes))),
                Ok(Step::Later(answer)) => answer,
                Ok(Step::Held(..)) => Box::pin(std::future::ready(Err(
                    "a held step inside a held step".to_string(),
                ))),
                Err(why) => Box::pin(std::future::ready(Err(why))),
            };
            if answers_tx.send(answer).await.is_err() {
                return;
            }
            // A client over its quota: its response is on its way (saying
            // how long to back off) and its next request waits that long,
            // as Kafka mutes the channel (KIP-219).
            if !hold.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(hold) => {}
                    () = answers_tx.closed() => return,
                    () = held_until.cancelled() => {}
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(answer) = answers.recv().await {
            match answer.await {
                Ok(Some(outgoing)) => {
                    if let Err(error) = write_half.send(&outgoing).await {
                        debug!(%peer, %error, "write to client failed");
                        return;
                    }
                }
                Ok(None) => {}
                Err(why) => {
                    warn!(%peer, %why, "closing connection");
                    return;
                }
            }
        }
        write_half.shutdown().await;
    });
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
        match handlers::dispatch(broker, frame, peer, &session) {
            Dispatch::Respond(fut) => {
                if tx.send(fut).await.is_err() {
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
    let _ = runner.await;
    let _ = writer.await;
}

/// Reads one size-prefixed frame; `Ok(None)` on a clean end of stream.
pub(crate) async fn read_frame<R>(
    reader: &mut R,
    max_request: i64,
) -> Result<Option<BytesMut>, String>
where
    R: tokio::io::AsyncRead + Unpin,
{
    read_frame_within(
        reader,
        MIN_REQUEST_LEN,
        max_request,
        "socket.request.max.bytes",
    )
    .await
}

/// [`read_frame`] with other bounds: `limit` names the setting behind `max`.
pub(crate) async fn read_frame_within<R>(
    reader: &mut R,
    min: i32,
    max: i64,
    limit: &str,
) -> Result<Option<BytesMut>, String>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let size = match reader.read_i32().await {
        Ok(size) => size,
        // The client went away between requests: not a bad frame.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(format!("read failed: {e}")),
    };
    if size < min {
        return Err(format!("request size {size} is below the minimum {min}"));
    }
    if i64::from(size) > max {
        return Err(format!("request size {size} exceeds {limit} {max}"));
    }
    // Read into uninitialised capacity: no zeroing of large produce frames.
    let size = size as usize;
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = (size - buf.len()) as u64;
        match (&mut *reader).take(want).read_buf(&mut buf).await {
            Ok(0) => {
                return Err(format!(
                "truncated request of declared size {size}: the connection closed after {} bytes",
                buf.len()
            ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("truncated request of declared size {size}: {e}")),
        }
    }
    Ok(Some(buf))
}

/// Logs the listener address once bound.
pub fn announce(addr: SocketAddr) {
    info!(%addr, "kafka listener ready");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair of loopback sockets.
    async fn connected() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }

    fn send_buffer(stream: &TcpStream) -> usize {
        socket2::SockRef::from(stream)
            .send_buffer_size()
            .expect("SO_SNDBUF")
    }

    #[tokio::test]
    async fn the_send_buffer_follows_the_setting() {
        let (_client, accepted) = connected().await;
        let settings =
            BrokerSettings::from_pairs(&["socket.send.buffer.bytes=65536".into()]).expect("valid");
        size_send_buffer(&accepted, &settings).expect("set");
        // Linux doubles the value asked for, to leave room for bookkeeping.
        assert!(
            (65_536..=131_072).contains(&send_buffer(&accepted)),
            "{}",
            send_buffer(&accepted)
        );

        let (_client, untouched) = connected().await;
        let before = send_buffer(&untouched);
        let system_default =
            BrokerSettings::from_pairs(&["socket.send.buffer.bytes=-1".into()]).expect("valid");
        size_send_buffer(&untouched, &system_default).expect("left alone");
        assert_eq!(send_buffer(&untouched), before);
    }
}
