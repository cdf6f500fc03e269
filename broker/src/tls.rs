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
use rustls::ServerConfig;
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

/// The listener's TLS: the server configuration in use, and the files it
/// was made from.
pub struct ServerTls {
    sources: Sources,
    current: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    stamps: Vec<Stamp>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The listener's TLS from the settings: `None` for a listener without
    /// TLS; an error naming the setting when the settings or the files they
    /// name are not usable.
    pub fn from_settings(settings: &BrokerSettings) -> Result<Option<ServerTls>, String> {
        if !required(settings) {
            return Ok(None);
        }
        let path = |key: &str| {
            let value = settings.get(key).trim();
            (!value.is_empty()).then(|| PathBuf::from(value))
        };
        let protocol = settings.get("listener.security.protocol");
        let keystore = path("ssl.keystore.location").ok_or_else(|| {
            format!("ssl.keystore.location: a {protocol} listener needs a PEM file with its private key and certificate chain")
        })?;
        let client_auth = match settings.get("ssl.client.auth") {
            "required" => ClientAuth::Required,
            "requested" => ClientAuth::Requested,
            _ => ClientAuth::None,
        };
        let truststore = path("ssl.truststore.location");
        if client_auth != ClientAuth::None && truststore.is_none() {
            return Err(format!(
                "ssl.truststore.location: ssl.client.auth={} needs the CA certificates to check client certificates against",
                settings.get("ssl.client.auth")
            ));
        }
        let protocols = settings.get("ssl.enabled.protocols");
        let sources = Sources {
            keystore,
            key: path("ssl.keystore.key.location"),
            truststore,
            client_auth,
            tls12: protocols.split(',').any(|p| p.trim() == "TLSv1.2"),
            tls13: protocols.split(',').any(|p| p.trim() == "TLSv1.3"),
        };
        let stamps = sources.stamps();
        let config = sources.load()?;
        Ok(Some(ServerTls {
            sources,
            current: Mutex::new(Loaded {
                config: Arc::new(config),
                stamps,
            }),
        }))
    }

    /// The configuration for a new connection, loaded again first if one of
    /// its files changed. `Err` carries why a changed file did not load
    /// (the configuration before it is still returned with it).
    pub(crate) fn config(&self) -> (Arc<ServerConfig>, Option<String>) {
        let stamps = self.sources.stamps();
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stamps == current.stamps {
            return (current.config.clone(), None);
        }
        // Whatever the outcome, this version of the files is dealt with:
        // a bad one is reported once, not at every connection.
        current.stamps = stamps;
        match self.sources.load() {
            Ok(config) => {
                info!("TLS keystore or truststore changed: new connections use the new files");
                current.config = Arc::new(config);
                (current.config.clone(), None)
            }
            Err(why) => {
                warn!(%why, "TLS files changed but do not load; keeping the ones in use");
                (current.config.clone(), Some(why))
            }
        }
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

    fn load(&self) -> Result<ServerConfig, String> {
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut versions = Vec::new();
        if self.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("ssl.enabled.protocols: {e}"))?;
        let builder = match (&self.truststore, self.client_auth) {
            (Some(path), auth) if auth != ClientAuth::None => {
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
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("ssl.truststore.location: {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        builder.with_single_cert(chain, key).map_err(|e| {
            format!(
                "ssl.keystore.location: {}: the private key and the certificate do not make a usable pair: {e}",
                self.keystore.display()
            )
        })
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
