//! AlterUserScramCredentials (key 51) and DescribeUserScramCredentials
//! (key 50), KIP-554: the SCRAM credentials SASL clients authenticate
//! with, kept in the cluster metadata through the controller.
//! `kafka-configs.sh --entity-type users --add-config 'SCRAM-SHA-256=[...]'`
//! sends these; the client salts the password, so it never reaches the broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::cluster::{MetadataCommand, ScramCredential};
use crate::sasl::scram::{Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

/// The only version of each (flexible).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

type Refusal = (ResponseError, String);

/// One change to a user's credentials.
struct Change {
    mechanism: Mechanism,
    credential: Option<ScramCredential>,
}

/// Checks one change as Kafka does.
fn plan(user: &str, mechanism: i8, upsert: Option<(i32, &[u8], &[u8])>) -> Result<Change, Refusal> {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    let mechanism = Mechanism::from_code(mechanism).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        format!("Unknown SCRAM mechanism {mechanism}"),
    ))?;
    let credential = match upsert {
        None => None,
        Some((iterations, salt, salted_password)) => {
            if iterations < MIN_ITERATIONS {
                return Err((
                    ResponseError::UnacceptableCredential,
                    format!("Too few iterations: {iterations} (at least {MIN_ITERATIONS})"),
                ));
            }
            if iterations > MAX_ITERATIONS {
                return Err((
                    ResponseError::UnacceptableCredential,
                    format!("Too many iterations: {iterations} (at most {MAX_ITERATIONS})"),
                ));
            }
            if salt.is_empty() || salted_password.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "the salt and salted password must not be empty".into(),
                ));
            }
            Some(mechanism.credential(salt.to_vec(), salted_password, iterations))
        }
    };
    Ok(Change {
        mechanism,
        credential,
    })
}

/// Answers AlterUserScramCredentials: per user, all its changes or none.
pub(crate) async fn alter(
    broker: &Arc<Broker>,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Users in the order first named, with their changes.
    let mut users: Vec<(String, Result<Vec<Change>, Refusal>)> = Vec::new();
    let deletions = request
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), plan(&d.name, d.mechanism, None)));
    let upsertions = request.upsertions.iter().map(|u| {
        let change = plan(
            &u.name,
            u.mechanism,
            Some((u.iterations, &u.salt[..], &u.salted_password[..])),
        );
        (u.name.to_string(), change)
    });
    for (user, change) in deletions.chain(upsertions) {
        let index = match users.iter().position(|(u, _)| *u == user) {
            Some(i) => i,
            None => {
                users.push((user.clone(), Ok(Vec::new())));
                users.len() - 1
            }
        };
        let entry = &mut users[index].1;
        let Ok(changes) = entry else { continue };
        match change {
            Ok(change) if changes.iter().any(|c| c.mechanism == change.mechanism) => {
                *entry = Err((
                    ResponseError::DuplicateResource,
                    format!(
                        "A user credential cannot be altered twice in the same request: {user} {}",
                        change.mechanism.name()
                    ),
                ));
            }
            Ok(change) => changes.push(change),
            Err(refusal) => *entry = Err(refusal),
        }
    }
    let mut results = Vec::with_capacity(users.len());
    for (user, changes) in users {
        let outcome = match changes {
            Ok(changes) => apply(broker, &user, changes).await,
            Err(refusal) => Err(refusal),
        };
        let result =
            AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(user));
        results.push(match outcome {
            Ok(()) => result,
            Err((code, message)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Writes one user's checked changes through the controller, as one
/// metadata entry: all of them or none.
async fn apply(broker: &Arc<Broker>, user: &str, changes: Vec<Change>) -> Result<(), Refusal> {
    broker
        .write(MetadataCommand::SetScramCredentials {
            user: user.to_string(),
            changes: changes
                .into_iter()
                .map(|c| (c.mechanism.name().to_string(), c.credential))
                .collect(),
        })
        .await
        .map(|_| ())
        .map_err(|e| (e.kafka(), e.to_string()))
}

/// Answers DescribeUserScramCredentials: the mechanisms and iterations of
/// the users asked for (all users with a credential when none are named).
pub(crate) fn describe(
    broker: &Arc<Broker>,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = broker.image();
    let infos = |credentials: &BTreeMap<String, ScramCredential>| -> Vec<CredentialInfo> {
        credentials
            .iter()
            .filter_map(|(name, c)| {
                Mechanism::from_name(name).map(|m| {
                    CredentialInfo::default()
                        .with_mechanism(m.code())
                        .with_iterations(c.iterations)
                })
            })
            .collect()
    };
    let named: Vec<String> = request
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    let results = if named.is_empty() {
        image
            .scram
            .iter()
            .map(|(user, credentials)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()))
                    .with_credential_infos(infos(credentials))
            })
            .collect()
    } else {
        named
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let result = DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user.clone()));
                let refused = |code: ResponseError, message: String| {
                    result
                        .clone()
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                };
                if named[..i].contains(user) || named[i + 1..].contains(user) {
                    return refused(
                        ResponseError::DuplicateResource,
                        format!("Cannot describe SCRAM credentials for the same user twice in a single request: {user}"),
                    );
                }
                match image.scram.get(user) {
                    Some(credentials) => result.with_credential_infos(infos(credentials)),
                    None => refused(
                        ResponseError::ResourceNotFound,
                        format!("Attempt to describe a user credential that does not exist: {user}"),
                    ),
                }
            })
            .collect()
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
