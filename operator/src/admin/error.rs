//! What the admin client can fail with.

use kafka_protocol::ResponseError;

/// An admin call that failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No broker answered; the last failure is kept.
    #[error("no broker answered {api} (tried {tried}): {last}")]
    Unreachable {
        /// The API called.
        api: &'static str,
        /// The addresses tried, comma-separated.
        tried: String,
        /// The last failure.
        last: String,
    },
    /// Brokers answered, and refused the operator's credentials (a new
    /// password the brokers do not have yet, or a deleted user).
    #[error("the brokers refused the operator's credentials for {api} (tried {tried}): {last}")]
    Refused {
        /// The API called.
        api: &'static str,
        /// The addresses tried, comma-separated.
        tried: String,
        /// The last refusal.
        last: String,
    },
    /// A broker answered with a Kafka error.
    #[error("{api} for {subject} failed with {error}{}", message_suffix(.message))]
    Kafka {
        /// The API called.
        api: &'static str,
        /// What it was about (a topic, a group).
        subject: String,
        /// The Kafka error.
        error: ResponseError,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// A request or response could not be encoded or decoded.
    #[error("{api}: malformed exchange with {addr}: {message}")]
    Protocol {
        /// The API called.
        api: &'static str,
        /// The broker's address.
        addr: String,
        /// What was wrong.
        message: String,
    },
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl AdminError {
    /// The Kafka error, if the brokers answered with one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            AdminError::Kafka { error, .. } => Some(*error),
            AdminError::Unreachable { .. }
            | AdminError::Refused { .. }
            | AdminError::Protocol { .. } => None,
        }
    }

    /// Whether no broker could be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, AdminError::Unreachable { .. })
    }

    /// Whether the brokers refused the operator's credentials.
    pub fn is_refused(&self) -> bool {
        matches!(self, AdminError::Refused { .. })
    }
}

/// Errors that mean "ask another broker": this one is not the controller or
/// coordinator, or is not ready to be.
pub(crate) fn is_redirect(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotController
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::BrokerNotAvailable
            | ResponseError::RequestTimedOut
    )
}
