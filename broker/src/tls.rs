//! TLS for the Kafka listener (`listener.security.protocol` `SSL` or
//! `SASL_SSL`), with rustls.
//!
//! Keys and certificates come from PEM files, as Kafka's `PEM` keystore
//! type has them: `ssl.keystore.location` holds the private key and the
//! certificate chain (or the chain only, with the key in
//! `ssl.keystore.key.location`, the layout of a Kubernetes TLS Secret), and
//! `ssl.truststore.location` the CA certificates that client certificates
//! are checked against when `ssl.client.auth` asks for them.
//!
//! The files are read at start-up, where any problem stops the broker with
//! a message naming the setting, and again whenever one of them changes
//! (checked as each connection is accepted), so a rotated certificate
//! takes effect for new connections without a restart. A change that does
//! not load (a half-written file, a key that does not match) keeps the
//! certificates in use and is logged and counted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use tracing::{info, warn};

use crate::config::BrokerSettings;

/// Whether the listener's protocol runs over TLS.
pub(crate) fn required(settings: &BrokerSettings) -> bool {
    matches!(
        settings.get("listener.security.protocol"),
        "SSL" | "SASL_SSL"
    )
}

/// What `ssl.client.auth` asks of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    Requested,
    Required,
    /// Required, and the certificate must name a broker of the cluster
    /// (inter-broker TLS).
    Brokers,
}

/// The TLS settings, as given.
#[derive(Debug, Clone)]
struct Sources {
    keystore: PathBuf,
    key: Option<PathBuf>,
    truststore: Option<PathBuf>,
    client_auth: ClientAuth,
    tls12: bool,
    tls13: bool,
}

/// A file's identity for change detection: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A TLS configuration made from files, made again when they change.
struct Reloading<T> {
    sources: Sources,
    load: fn(&Sources) -> Result<T, String>,
    current: Mutex<(Arc<T>, Vec<Stamp>)>,
}

impl<T> Reloading<T> {
    fn new(sources: Sources, load: fn(&Sources) -> Result<T, String>) -> Result<Self, String> {
        let stamps = sources.stamps();
        let config = load(&sources)?;
        Ok(Reloading {
            sources,
            load,
            current: Mutex::new((Arc::new(config), stamps)),
        })
    }

    /// The configuration, loaded again first if one of its files changed;
    /// with why a changed file did not load (the configuration before it
    /// is returned then).
    fn get(&self) -> (Arc<T>, Option<String>) {
        let stamps = self.sources.stamps();
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stamps == current.1 {
            return (current.0.clone(), None);
        }
        // Whatever the outcome, this version of the files is dealt with:
        // a bad one is reported once, not at every connection.
        current.1 = stamps;
        match (self.load)(&self.sources) {
            Ok(config) => {
                info!("TLS keystore or truststore changed: new connections use the new files");
                current.0 = Arc::new(config);
                (current.0.clone(), None)
            }
            Err(why) => {
                warn!(%why, "TLS files changed but do not load; keeping the ones in use");
                (current.0.clone(), Some(why))
            }
        }
    }
}

/// The listener's TLS: the server configuration in use, and the files it
/// was made from.
pub struct ServerTls(Reloading<ServerConfig>);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("sources", &self.0.sources)
            .finish_non_exhaustive()
    }
}

fn path_setting(settings: &BrokerSettings, key: &str) -> Option<PathBuf> {
    let value = settings.get(key).trim();
    (!value.is_empty()).then(|| PathBuf::from(value))
}

fn tls_versions(settings: &BrokerSettings) -> (bool, bool) {
    let protocols = settings.get("ssl.enabled.protocols");
    (
        protocols.split(',').any(|p| p.trim() == "TLSv1.2"),
        protocols.split(',').any(|p| p.trim() == "TLSv1.3"),
    )
}

impl ServerTls {
    /// The listener's TLS from the settings: `None` for a listener without
    /// TLS; an error naming the setting when the settings or the files they
    /// name are not usable.
    pub fn from_settings(settings: &BrokerSettings) -> Result<Option<ServerTls>, String> {
        if !required(settings) {
            return Ok(None);
        }
        let protocol = settings.get("listener.security.protocol");
        let keystore = path_setting(settings, "ssl.keystore.location").ok_or_else(|| {
            format!("ssl.keystore.location: a {protocol} listener needs a PEM file with its private key and certificate chain")
        })?;
        let client_auth = match settings.get("ssl.client.auth") {
            "required" => ClientAuth::Required,
            "requested" => ClientAuth::Requested,
            _ => ClientAuth::None,
        };
        let truststore = path_setting(settings, "ssl.truststore.location");
        if client_auth != ClientAuth::None && truststore.is_none() {
            return Err(format!(
                "ssl.truststore.location: ssl.client.auth={} needs the CA certificates to check client certificates against",
                settings.get("ssl.client.auth")
            ));
        }
        let (tls12, tls13) = tls_versions(settings);
        let sources = Sources {
            keystore,
            key: path_setting(settings, "ssl.keystore.key.location"),
            truststore,
            client_auth,
            tls12,
            tls13,
        };
        Ok(Some(ServerTls(Reloading::new(sources, Sources::load)?)))
    }

    /// The configuration for a new connection, loaded again first if one of
    /// its files changed. `Err` carries why a changed file did not load
    /// (the configuration before it is still returned with it).
    pub(crate) fn config(&self) -> (Arc<ServerConfig>, Option<String>) {
        self.0.get()
    }
}

/// TLS between brokers (`security.inter.broker.protocol=SSL`): each broker's
/// gRPC listener asks for a certificate the truststore's CA signed, and
/// each broker presents its keystore's to the others, so only brokers of
/// the cluster replicate, vote and read its metadata (SCRAM keys included).
pub struct InterBrokerTls {
    server: Reloading<ServerConfig>,
    client: Reloading<ClientConfig>,
}

impl std::fmt::Debug for InterBrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterBrokerTls")
            .field("sources", &self.server.sources)
            .finish_non_exhaustive()
    }
}

static INTER_BROKER: std::sync::OnceLock<Arc<InterBrokerTls>> = std::sync::OnceLock::new();

/// The process's inter-broker TLS, if it has one.
pub(crate) fn inter_broker() -> Option<&'static Arc<InterBrokerTls>> {
    INTER_BROKER.get()
}

impl InterBrokerTls {
    /// Inter-broker TLS from the settings: `None` when
    /// `security.inter.broker.protocol` is PLAINTEXT; an error naming the
    /// setting when the files are not usable.
    pub fn from_settings(settings: &BrokerSettings) -> Result<Option<InterBrokerTls>, String> {
        if settings.get("security.inter.broker.protocol") != "SSL" {
            return Ok(None);
        }
        let keystore = path_setting(settings, "ssl.keystore.location").ok_or(
            "ssl.keystore.location: security.inter.broker.protocol=SSL needs each broker's private key and certificate",
        )?;
        let truststore = path_setting(settings, "ssl.truststore.location").ok_or(
            "ssl.truststore.location: security.inter.broker.protocol=SSL needs the CA that signed the brokers' certificates",
        )?;
        let (tls12, tls13) = tls_versions(settings);
        let sources = Sources {
            keystore,
            key: path_setting(settings, "ssl.keystore.key.location"),
            truststore: Some(truststore),
            client_auth: ClientAuth::Brokers,
            tls12,
            tls13,
        };
        Ok(Some(InterBrokerTls {
            server: Reloading::new(sources.clone(), Sources::load)?,
            client: Reloading::new(sources, Sources::load_client)?,
        }))
    }

    /// Makes this the process's inter-broker TLS (once).
    pub fn install(self) -> Result<(), String> {
        INTER_BROKER
            .set(Arc::new(self))
            .map_err(|_| "inter-broker TLS set twice".to_string())
    }

    /// The server configuration for the gRPC listener's next connection.
    pub(crate) fn server(&self) -> (Arc<ServerConfig>, Option<String>) {
        self.server.get()
    }

    /// The client configuration for the next connection to another broker.
    pub(crate) fn client(&self) -> (Arc<ClientConfig>, Option<String>) {
        self.client.get()
    }
}

impl Sources {
    fn stamps(&self) -> Vec<Stamp> {
        [
            Some(&self.keystore),
            self.key.as_ref(),
            self.truststore.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| stamp(p))
        .collect()
    }

    /// The keystore: the certificate chain and its private key.
    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let keystore = read_pem("ssl.keystore.location", &self.keystore)?;
        let chain = certificates("ssl.keystore.location", &self.keystore, &keystore)?;
        let key = match &self.key {
            Some(path) => private_key(
                "ssl.keystore.key.location",
                path,
                &read_pem("ssl.keystore.key.location", path)?,
            )?,
            None => private_key("ssl.keystore.location", &self.keystore, &keystore)?,
        };
        Ok((chain, key))
    }

    /// The truststore's CA certificates.
    fn roots(path: &Path) -> Result<rustls::RootCertStore, String> {
        let pem = read_pem("ssl.truststore.location", path)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates("ssl.truststore.location", path, &pem)? {
            roots.add(cert).map_err(|e| {
                format!(
                    "ssl.truststore.location: {}: a certificate is not a usable CA: {e}",
                    path.display()
                )
            })?;
        }
        Ok(roots)
    }

    fn versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let mut versions = Vec::new();
        if self.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        versions
    }

    fn mismatched(&self, e: rustls::Error) -> String {
        format!(
            "ssl.keystore.location: {}: the private key and the certificate do not make a usable pair: {e}",
            self.keystore.display()
        )
    }

    /// A client configuration for connections to other brokers: trusting
    /// the truststore, presenting the keystore's certificate.
    fn load_client(&self) -> Result<ClientConfig, String> {
        let (chain, key) = self.identity()?;
        let truststore = self
            .truststore
            .as_ref()
            .ok_or("ssl.truststore.location: not set")?;
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&self.versions())
            .map_err(|e| format!("ssl.enabled.protocols: {e}"))?
            .with_root_certificates(Self::roots(truststore)?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| self.mismatched(e))
    }

    fn load(&self) -> Result<ServerConfig, String> {
        let (chain, key) = self.identity()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions())
            .map_err(|e| format!("ssl.enabled.protocols: {e}"))?;
        let builder = match (&self.truststore, self.client_auth) {
            (Some(path), auth) if auth != ClientAuth::None => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(Self::roots(path)?),
                    provider,
                );
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("ssl.truststore.location: {}: {e}", path.display()))?;
                if auth == ClientAuth::Brokers {
                    builder.with_client_cert_verifier(Arc::new(BrokerPeers { inner: verifier }))
                } else {
                    builder.with_client_cert_verifier(verifier)
                }
            }
            _ => builder.with_no_client_auth(),
        };
        builder
            .with_single_cert(chain, key)
            .map_err(|e| self.mismatched(e))
    }
}

fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
}

fn certificates(
    key: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key}: {} holds no certificate (PEM `BEGIN CERTIFICATE`)",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(key: &str, path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if pem
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
    {
        return Err(format!(
            "{key}: {}: the private key is encrypted; Runnel reads unencrypted PEM keys only (ssl.key.password is not supported)",
            path.display()
        ));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!(
            "{key}: {}: no usable private key (PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`): {e}",
            path.display()
        )
    })
}

/// The host names of the cluster's brokers (the controller voters', and
/// every registered broker's gRPC host): an inter-broker peer's
/// certificate must be valid for one of them.
static PEER_HOSTS: std::sync::RwLock<std::collections::BTreeSet<String>> =
    std::sync::RwLock::new(std::collections::BTreeSet::new());

/// Adds the hosts of `addresses` (`HOST:PORT`) to the cluster's broker hosts.
pub(crate) fn add_peer_hosts<'a>(addresses: impl IntoIterator<Item = &'a str>) {
    let hosts: Vec<String> = addresses
        .into_iter()
        .filter_map(|a| a.rsplit_once(':').map(|(h, _)| h))
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect();
    let known = PEER_HOSTS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if hosts.iter().all(|h| known.contains(h)) {
        return;
    }
    drop(known);
    PEER_HOSTS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(hosts);
}

/// Client certificates on the gRPC listener: signed by the truststore's CA
/// (the inner verifier) and naming a broker of the cluster, so that a
/// client certificate the same CA issued to an application (for
/// `ssl.client.auth` on the Kafka listener) does not open the brokers'
/// own traffic.
#[derive(Debug)]
struct BrokerPeers {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl rustls::server::danger::ClientCertVerifier for BrokerPeers {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("unreadable certificate: {e}")))?;
        let hosts = PEER_HOSTS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let names_a_broker = hosts.iter().any(|host| {
            rustls::pki_types::ServerName::try_from(host.as_str())
                .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
        });
        if names_a_broker {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "the certificate names none of the cluster's brokers ({})",
                hosts.iter().cloned().collect::<Vec<_>>().join(", ")
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A connection on the gRPC listener: a bare socket, or a TLS session
/// between brokers.
pub(crate) enum RpcStream {
    /// `security.inter.broker.protocol=PLAINTEXT`.
    Plain(tokio::net::TcpStream),
    /// `security.inter.broker.protocol=SSL`.
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for RpcStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            RpcStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            RpcStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for RpcStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            RpcStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            RpcStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            RpcStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            RpcStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            RpcStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            RpcStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for RpcStream {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// How many inter-broker TLS handshakes may run at once.
const RPC_MAX_HANDSHAKES: usize = 64;

/// How long another broker gets to finish its TLS handshake.
const RPC_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts gRPC connections until `shutdown`, over TLS when the process
/// has inter-broker TLS, as a stream for tonic's `serve_with_incoming`.
/// Handshakes run concurrently: a slow peer holds up no other.
pub(crate) fn rpc_incoming(
    listener: tokio::net::TcpListener,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<RpcStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(RPC_MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "gRPC accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Followers' fetches and Raft messages are small request/response
            // pairs: with Nagle's algorithm on, each answer can wait for the
            // peer's delayed ACK (~40 ms), which acks=all then waits on.
            let _ = stream.set_nodelay(true);
            let Some(tls) = inter_broker() else {
                if tx.send(Ok(RpcStream::Plain(stream))).await.is_err() {
                    return;
                }
                continue;
            };
            // At most this many handshakes at once: a flood of connections
            // that never finish theirs waits here instead of piling up tasks.
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let tx = tx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let (config, reload_error) = tls.server();
                if reload_error.is_some() {
                    metrics.tls_reload_failures.inc();
                }
                let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                match tokio::time::timeout(RPC_HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(session)) => {
                        let _ = tx.send(Ok(RpcStream::Tls(Box::new(session)))).await;
                    }
                    Ok(Err(error)) => {
                        metrics.tls_handshake_failures.inc();
                        info!(%peer, %error, "inter-broker TLS handshake failed");
                    }
                    Err(_) => {
                        metrics.tls_handshake_failures.inc();
                        info!(%peer, "inter-broker TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Connects a gRPC channel to another broker over TLS: its certificate must
/// chain to the truststore and name the host connected to, and this
/// broker presents its own.
pub(crate) fn rpc_connector(
    tls: &'static Arc<InterBrokerTls>,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl std::future::Future<
        Output = std::io::Result<
            hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        >,
    > + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |uri: tonic::transport::Uri| async move {
        let host = uri
            .host()
            .ok_or_else(|| std::io::Error::other(format!("no host in {uri}")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| std::io::Error::other(format!("{host}: not a TLS server name: {e}")))?;
        let (config, _) = tls.client();
        let session = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(hyper_util::rt::TokioIo::new(session))
    })
}
