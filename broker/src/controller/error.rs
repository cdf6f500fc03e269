//! Errors of the controller quorum and of brokers' calls to it.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong starting the controller or talking to the quorum.
///
/// For Kafka answers: `NotController` is `NOT_CONTROLLER`; `Unavailable`,
/// `Timeout` and `Stopped` are `REQUEST_TIMED_OUT` (the client retries);
/// `Rejected` carries its own code; the rest are `UNKNOWN_SERVER_ERROR`.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A file of the metadata log could not be read or written.
    #[error("metadata log {path}: {source}")]
    Storage {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the metadata log holds something this version cannot read.
    #[error("metadata log {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration cannot run a quorum (a negative or repeated voter id,
    /// a zero timeout, ...).
    #[error("invalid controller configuration: {0}")]
    Config(String),
    /// Raft failed to start, or stopped with a fatal error.
    #[error("raft: {0}")]
    Raft(String),
    /// Voters answered, but none of them is a leader that can commit (an
    /// election is under way, or the leader lost its majority).
    #[error("no controller leader within {after:?} (last known leader: {leader:?})")]
    NotController {
        /// How long the call tried.
        after: Duration,
        /// The last leader a voter named, `ID@HOST:PORT`.
        leader: Option<String>,
    },
    /// No voter could be reached.
    #[error("controller quorum unreachable for {after:?}: {last_error}")]
    Unavailable {
        /// How long the call tried.
        after: Duration,
        /// The last transport error.
        last_error: String,
    },
    /// A request reached a voter but was not answered in time: it may or may
    /// not have been applied.
    #[error("{what} not answered within {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The quorum refused the command.
    #[error("refused by the controller: {message} (error code {code})")]
    Rejected {
        /// The Kafka error code.
        code: i16,
        /// Why.
        message: String,
    },
    /// A message from a voter could not be decoded.
    #[error("malformed controller message: {0}")]
    Protocol(String),
    /// The controller was stopped.
    #[error("the controller is stopped")]
    Stopped,
}

impl ControllerError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ControllerError::NotController { .. }
            | ControllerError::Unavailable { .. }
            | ControllerError::Timeout { .. } => true,
            ControllerError::Storage { .. }
            | ControllerError::Corrupt { .. }
            | ControllerError::Config(_)
            | ControllerError::Raft(_)
            | ControllerError::Rejected { .. }
            | ControllerError::Protocol(_)
            | ControllerError::Stopped => false,
        }
    }
}
