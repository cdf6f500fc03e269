//! One TCP connection to one broker (over TLS when the brokers' listener
//! has it): size-prefixed request frames out, responses in, matched by
//! correlation id.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client id the brokers see.
const CLIENT_ID: &str = "runnel-operator";

/// The largest response accepted: metadata of a big cluster fits well
/// within it, and a corrupt size prefix cannot make us allocate gigabytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How a call on one connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The connection failed or timed out: try another broker.
    #[error("{0}")]
    Io(String),
    /// The bytes made no sense: a bug on one side, not worth retrying elsewhere.
    #[error("{0}")]
    Protocol(String),
    /// The broker did not accept the operator's credentials.
    #[error("{0}")]
    Refused(String),
}

/// A byte stream to a broker: a TCP socket or a TLS session over one.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The TLS client configuration trusting the CA certificates in `ca_pem`
/// (the brokers' certificates must chain to one of them and name the
/// host the operator connects to).
pub(crate) fn tls_trusting(
    ca_pem: &[u8],
    identity: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a CA certificate is not usable: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate (PEM `BEGIN CERTIFICATE`) in it".to_owned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(&chain_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls.crt: bad PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| format!("tls.key: no usable private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls.crt and tls.key do not make a usable pair: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// A connection to one broker.
pub(crate) struct Connection {
    stream: Box<dyn Stream>,
    addr: String,
    correlation_id: i32,
    timeout: Duration,
}

impl Connection {
    /// Connects to `addr` (`host:port`) within `timeout`, with a TLS
    /// handshake when `tls` is given; calls on the connection get the same
    /// deadline.
    pub(crate) async fn connect(
        addr: &str,
        timeout: Duration,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Self, CallError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| CallError::Io(format!("connect to {addr} timed out")))?
            .map_err(|e| CallError::Io(format!("connect to {addr}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| CallError::Io(format!("{addr}: {e}")))?;
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(stream),
            Some(config) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| CallError::Io(format!("{addr}: not a TLS server name: {e}")))?;
                let handshake =
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream);
                let session = tokio::time::timeout(timeout, handshake)
                    .await
                    .map_err(|_| CallError::Io(format!("{addr}: TLS handshake timed out")))?
                    .map_err(|e| CallError::Io(format!("{addr}: TLS handshake: {e}")))?;
                Box::new(session)
            }
        };
        Ok(Connection {
            stream,
            addr: addr.to_owned(),
            correlation_id: 0,
            timeout,
        })
    }

    /// Authenticates with SCRAM-SHA-512 (SaslHandshake v1, then two
    /// SaslAuthenticate v1) before any other call.
    pub(crate) async fn authenticate(
        &mut self,
        credentials: &super::scram::Credentials,
    ) -> Result<(), CallError> {
        use super::scram::{ScramClient, MECHANISM};
        use kafka_protocol::messages::SaslHandshakeRequest;
        let addr = self.addr.clone();
        let failed = |why: String| CallError::Refused(format!("{addr}: SASL {MECHANISM}: {why}"));
        let handshake = self
            .call(
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(MECHANISM)),
                1,
            )
            .await?;
        if handshake.error_code != 0 {
            return Err(failed(format!(
                "the broker refuses the mechanism (error {}; it offers {:?})",
                handshake.error_code, handshake.mechanisms
            )));
        }
        let (client, first) = ScramClient::start(&credentials.username).map_err(&failed)?;
        let server_first = self.sasl_step(first).await.map_err(&failed)?;
        let (last, expected) = client
            .finish(&credentials.password, &server_first)
            .map_err(&failed)?;
        let server_final = self.sasl_step(last).await.map_err(&failed)?;
        ScramClient::verify(&server_final, &expected).map_err(&failed)
    }

    /// One SaslAuthenticate v1 exchange: the broker's answer token.
    async fn sasl_step(&mut self, token: String) -> Result<String, String> {
        use kafka_protocol::messages::SaslAuthenticateRequest;
        let request = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(token));
        let answer = self.call(&request, 1).await.map_err(|e| e.to_string())?;
        if answer.error_code != 0 {
            return Err(answer
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_else(|| format!("error {}", answer.error_code)));
        }
        Ok(String::from_utf8_lossy(&answer.auth_bytes).into_owned())
    }

    /// Sends `request` at `version` and waits for its response.
    pub(crate) async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, CallError> {
        let timeout = self.timeout;
        let addr = self.addr.clone();
        tokio::time::timeout(timeout, self.exchange(request, version))
            .await
            .map_err(|_| CallError::Io(format!("{addr}: no response within {timeout:?}")))?
    }

    async fn exchange<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, CallError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, R::header_version(version))
            .map_err(|e| CallError::Protocol(format!("request header does not encode: {e}")))?;
        request
            .encode(&mut frame, version)
            .map_err(|e| CallError::Protocol(format!("request does not encode: {e}")))?;
        let size = i32::try_from(frame.len() - 4)
            .map_err(|_| CallError::Protocol("request too large".to_owned()))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let io = |e: std::io::Error| CallError::Io(format!("{}: {e}", self.addr));
        self.stream.write_all(&frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;

        let size = self.stream.read_i32().await.map_err(io)?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| CallError::Protocol(format!("response size {size} out of range")))?;
        let mut body = BytesMut::zeroed(size);
        self.stream.read_exact(&mut body).await.map_err(io)?;
        let mut body = body.freeze();
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| CallError::Protocol(format!("response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(CallError::Protocol(format!(
                "correlation id {} does not match the request's {correlation_id}",
                header.correlation_id
            )));
        }
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| CallError::Protocol(format!("response: {e}")))?;
        if body.has_remaining() {
            tracing::debug!(addr = %self.addr, extra = body.remaining(), "response has trailing bytes");
        }
        Ok(response)
    }
}
