//! The operator's errors, each with a stable metric label.

use crate::admin::AdminError;

/// A reconcile that failed; the controller retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    /// The brokers refused or failed an admin request.
    #[error("brokers: {0}")]
    Admin(#[from] AdminError),
    /// Adding or removing a finalizer, or the cleanup it guards, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// An object lacks a field the API server always sets.
    #[error("object has no {0}")]
    MissingField(&'static str),
}

impl Error {
    /// A label for the errors metric that does not vary with the message.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Admin(e) if e.is_unreachable() => "brokers_unreachable",
            Error::Admin(_) => "broker_error",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                kube::runtime::finalizer::Error::AddFinalizer(_)
                | kube::runtime::finalizer::Error::RemoveFinalizer(_) => "finalizer",
                kube::runtime::finalizer::Error::UnnamedObject
                | kube::runtime::finalizer::Error::InvalidFinalizer => "invalid_object",
            },
            Error::MissingField(_) => "invalid_object",
        }
    }
}

/// The operator's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
