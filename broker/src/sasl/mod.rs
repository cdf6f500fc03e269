//! SASL authentication of Kafka connections, when the listener is
//! `SASL_PLAINTEXT` or `SASL_SSL` (`listener.security.protocol`): SCRAM-SHA-256,
//! SCRAM-SHA-512 (KIP-84) and PLAIN, checked against the SCRAM credentials
//! in the cluster metadata (AlterUserScramCredentials, or `--add-scram` at
//! start-up, as KIP-554 and KIP-900 have them).
//!
//! ```text
//!  connect ─▶ ApiVersions* ─▶ SaslHandshake(mechanism) ─▶ SaslAuthenticate × 1 (PLAIN) or 2 (SCRAM)
//!          (after a SaslHandshake v0: the bare tokens, size-prefixed)
//!          ─▶ authenticated: every other API, as on a PLAINTEXT listener
//! ```
//! Any other request before that, or a failed exchange, closes the
//! connection (after a SASL_AUTHENTICATION_FAILED answer), as Kafka does.
//! Authenticated users may do everything: there are no ACLs yet.

pub(crate) mod scram;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::AsyncRead;
use tracing::{debug, info};

use crate::broker::Broker;
use crate::config::BrokerSettings;
use crate::handlers::{self, Dispatch, Step};
use scram::{Mechanism, ScramServer};

/// The largest frame read from a client before it has authenticated
/// (Kafka's `sasl.server.max.receive.size` default).
const MAX_RECEIVE_BEFORE_AUTHENTICATION: i64 = 512 * 1024;

/// How long a client may take to authenticate before the connection closes.
pub(crate) const AUTHENTICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the Kafka listener asks clients to authenticate.
pub(crate) fn required(settings: &BrokerSettings) -> bool {
    matches!(
        settings.get("listener.security.protocol"),
        "SASL_PLAINTEXT" | "SASL_SSL"
    )
}

/// `sasl.enabled.mechanisms`, in order.
fn enabled(settings: &BrokerSettings) -> Vec<String> {
    settings
        .get("sasl.enabled.mechanisms")
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// The mechanism a handshake chose.
enum Chosen {
    Plain,
    Scram(Box<ScramServer>),
}

/// Runs a connection's SASL exchange; the authenticated user, or why the
/// connection closes.
pub(crate) async fn authenticate<R>(
    broker: &Arc<Broker>,
    reader: &mut R,
    writer: &mut crate::outgoing::Sink,
    peer: SocketAddr,
    max_request: i64,
) -> Result<String, String>
where
    R: AsyncRead + Unpin,
{
    let mechanisms = enabled(&broker.settings);
    let mut chosen: Option<(String, Chosen)> = None;
    // After a SaslHandshake v0 the tokens come as bare size-prefixed frames.
    let mut raw = false;
    loop {
        // Kafka's sasl.server.max.receive.size bounds what a client that
        // has not authenticated may make the broker read; a bare token
        // (after SaslHandshake v0) may be shorter than a request header.
        let frame = crate::server::read_frame_within(
            reader,
            if raw { 1 } else { 8 },
            max_request.min(MAX_RECEIVE_BEFORE_AUTHENTICATION),
            "sasl.server.max.receive.size",
        )
        .await?
        .ok_or("the client left before authenticating")?;
        if raw {
            let Some((name, mechanism)) = chosen.as_mut() else {
                return Err("no SASL mechanism chosen".into());
            };
            match step(broker, mechanism, &frame).await {
                Ok((reply, user)) => {
                    let mut out = Vec::with_capacity(4 + reply.len());
                    out.extend_from_slice(&(reply.len() as i32).to_be_bytes());
                    out.extend_from_slice(&reply);
                    writer
                        .send(&crate::outgoing::Outgoing::from(Bytes::from(out)))
                        .await
                        .map_err(|e| e.to_string())?;
                    if let Some(user) = user {
                        broker.metrics.authentication(true);
                        info!(%peer, %user, mechanism = %name, "authenticated");
                        return Ok(user);
                    }
                }
                Err(why) => {
                    broker.metrics.authentication(false);
                    debug!(%peer, mechanism = %name, %why, "authentication failed");
                    return Err(format!("authentication failed ({name})"));
                }
            }
            continue;
        }
        if frame.len() < 8 {
            return Err("a request shorter than its header".into());
        }
        let raw_key = (&frame[0..2]).get_i16();
        let version = (&frame[2..4]).get_i16();
        match ApiKey::try_from(raw_key) {
            Ok(ApiKey::ApiVersions) => {
                let anonymous =
                    Arc::new(crate::acl::Session::new(crate::acl::ANONYMOUS.into(), peer));
                let Dispatch::Respond(answer) = handlers::dispatch(broker, frame, peer, &anonymous)
                else {
                    return Err("a malformed ApiVersions request".into());
                };
                if let Step::Done(Some(out)) = answer.await? {
                    writer.send(&out).await.map_err(|e| e.to_string())?;
                }
            }
            Ok(ApiKey::SaslHandshake) if chosen.is_none() && (0..=1).contains(&version) => {
                raw = version == 0;
                let (correlation_id, request) =
                    decode::<SaslHandshakeRequest>(ApiKey::SaslHandshake, version, frame)?;
                let wanted = request.mechanism.to_string();
                let known = mechanisms.contains(&wanted);
                let response = SaslHandshakeResponse::default()
                    .with_error_code(if known {
                        0
                    } else {
                        ResponseError::UnsupportedSaslMechanism.code()
                    })
                    .with_mechanisms(
                        mechanisms
                            .iter()
                            .map(|m| StrBytes::from_string(m.clone()))
                            .collect(),
                    );
                send(
                    writer,
                    ApiKey::SaslHandshake,
                    version,
                    correlation_id,
                    ResponseKind::SaslHandshake(response),
                )
                .await?;
                chosen = Some((
                    wanted.clone(),
                    match Mechanism::from_name(&wanted) {
                        _ if !known => {
                            broker.metrics.authentication(false);
                            return Err(format!("unsupported SASL mechanism {wanted:?}"));
                        }
                        Some(m) => {
                            Chosen::Scram(Box::new(ScramServer::new(m, scram::server_nonce()?)))
                        }
                        None => Chosen::Plain,
                    },
                ));
            }
            Ok(ApiKey::SaslAuthenticate) if chosen.is_some() && (0..=2).contains(&version) => {
                let (correlation_id, request) =
                    decode::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate, version, frame)?;
                let Some((name, mechanism)) = chosen.as_mut() else {
                    return Err("no SASL mechanism chosen".into());
                };
                let outcome = step(broker, mechanism, &request.auth_bytes).await;
                let response = SaslAuthenticateResponse::default();
                let (response, result) = match outcome {
                    Ok((reply, user)) => (response.with_auth_bytes(Bytes::from(reply)), Ok(user)),
                    Err(why) => (
                        response
                            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Authentication failed during authentication due to invalid credentials with SASL mechanism {name}"
                            )))),
                        Err(why),
                    ),
                };
                send(
                    writer,
                    ApiKey::SaslAuthenticate,
                    version,
                    correlation_id,
                    ResponseKind::SaslAuthenticate(response),
                )
                .await?;
                match result {
                    Ok(Some(user)) => {
                        broker.metrics.authentication(true);
                        info!(%peer, %user, mechanism = %name, "authenticated");
                        return Ok(user);
                    }
                    Ok(None) => {}
                    Err(why) => {
                        broker.metrics.authentication(false);
                        debug!(%peer, mechanism = %name, %why, "authentication failed");
                        return Err(format!("authentication failed ({name})"));
                    }
                }
            }
            Ok(other) => {
                return Err(format!(
                    "unexpected {other:?} v{version} request before SASL authentication"
                ))
            }
            Err(_) => return Err(format!("unknown api key {raw_key} before authentication")),
        }
    }
}

/// One SaslAuthenticate step: the reply, and the user once authenticated.
async fn step(
    broker: &Broker,
    mechanism: &mut Chosen,
    token: &[u8],
) -> Result<(Vec<u8>, Option<String>), String> {
    let image = broker.image();
    match mechanism {
        Chosen::Scram(server) => {
            let name = server.mechanism().name();
            server.step(token, |user| {
                image.scram.get(user).and_then(|m| m.get(name)).cloned()
            })
        }
        Chosen::Plain => {
            // authzid \0 user \0 password
            let text = std::str::from_utf8(token).map_err(|_| "a PLAIN token is not UTF-8")?;
            let mut parts = text.split('\0');
            let (Some(authzid), Some(user), Some(password), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("a malformed PLAIN token".into());
            };
            if !authzid.is_empty() && authzid != user {
                return Err("the authorization id is not the username".into());
            }
            // The user's first SCRAM credential (an unknown user costs the
            // same work, so the time taken does not tell users apart).
            let credential = image.scram.get(user).and_then(|credentials| {
                Mechanism::ALL
                    .into_iter()
                    .find_map(|m| credentials.get(m.name()).map(|c| (m, c.clone())))
            });
            let password = password.to_string();
            // PBKDF2 runs thousands of rounds: off the runtime's workers,
            // a few at a time, so logins cannot starve produce and fetch.
            let _permit = PLAIN_CHECKS
                .acquire()
                .await
                .map_err(|_| "shutting down".to_string())?;
            let matched = tokio::task::spawn_blocking(move || match credential {
                Some((m, credential)) => m.verify_password(&credential, &password),
                None => {
                    let _ = Mechanism::Sha256.salted_password(
                        password.as_bytes(),
                        b"no-such-user",
                        scram::MIN_ITERATIONS,
                    );
                    false
                }
            })
            .await
            .map_err(|e| format!("the password check failed: {e}"))?;
            if matched {
                Ok((Vec::new(), Some(user.to_string())))
            } else {
                Err(format!("invalid credentials for {user:?}"))
            }
        }
    }
}

/// PLAIN password checks running at once.
static PLAIN_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A request's correlation id and body.
fn decode<T: Decodable>(key: ApiKey, version: i16, frame: BytesMut) -> Result<(i32, T), String> {
    let mut body = frame.freeze();
    let header = RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(|e| format!("malformed {key:?} v{version} request header: {e}"))?;
    let request =
        T::decode(&mut body, version).map_err(|e| format!("malformed {key:?} v{version}: {e}"))?;
    Ok((header.correlation_id, request))
}

/// Writes one response.
async fn send(
    writer: &mut crate::outgoing::Sink,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: ResponseKind,
) -> Result<(), String> {
    let bytes = handlers::encode_response(key, version, correlation_id, response)?;
    writer
        .send(&crate::outgoing::Outgoing::from(bytes))
        .await
        .map_err(|e| e.to_string())
}

/// Makes each `--add-scram` credential whose user has none for that
/// mechanism, or one made from another password (through the controller,
/// so every broker has it).
pub(crate) async fn add_credentials(
    broker: &Broker,
    entries: Vec<(Mechanism, String, String, i32)>,
) -> Result<(), crate::error::BrokerError> {
    for (mechanism, user, password, iterations) in entries {
        // Kept when it still matches; made again when the password changed
        // (a rotated Secret takes effect when the brokers restart).
        let current = broker
            .image()
            .scram
            .get(&user)
            .and_then(|m| m.get(mechanism.name()).cloned());
        if current.is_some_and(|c| mechanism.verify_password(&c, &password)) {
            continue;
        }
        broker
            .write(crate::cluster::MetadataCommand::SetScramCredentials {
                user: user.clone(),
                changes: vec![(
                    mechanism.name().to_string(),
                    Some(
                        mechanism
                            .new_credential(&password, iterations)
                            .map_err(crate::error::BrokerError::MetadataIo)?,
                    ),
                )],
            })
            .await?;
        info!(%user, mechanism = mechanism.name(), "added a SCRAM credential");
    }
    Ok(())
}
