//! The broker's errors, and the one place they become Kafka error codes.

use kafka_protocol::ResponseError;

/// A bad setting or flag, reported at start-up or to an admin request.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--set` without `=`.
    #[error("malformed --set {0:?}: expected key=value")]
    MalformedSet(String),
    /// `--set` of a key the broker does not know.
    #[error("unknown broker setting {0:?}")]
    UnknownSetting(String),
    /// A topic config the broker does not know.
    #[error("unknown topic config {0:?}")]
    UnknownTopicConfig(String),
    /// A value that does not fit its setting.
    #[error("invalid value {value:?} for {name}: {why}")]
    InvalidValue {
        /// The setting.
        name: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// A `--controller-voters` entry that is not `ID@HOST:PORT`.
    #[error("malformed controller voter {0:?}: expected ID@HOST:PORT")]
    MalformedVoter(String),
    /// An address that is not `HOST:PORT`.
    #[error("malformed address {0:?}: expected HOST:PORT")]
    MalformedAddress(String),
}

/// Why a request about a topic or partition failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The topic or partition does not exist.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// No topic has this id.
    #[error("unknown topic id")]
    UnknownTopicId,
    /// The topic name is not legal.
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A partition count that is not allowed.
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// The client's controller mutation quota is used up (KIP-599).
    #[error("{0}")]
    ThrottlingQuotaExceeded(String),
    /// A replication factor that cannot be met.
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// A replica assignment that cannot be met.
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// A bad topic config.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A malformed request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// acks other than -1, 0, 1.
    #[error("invalid required acks {0}")]
    InvalidRequiredAcks(i16),
    /// The partition log failed.
    #[error("{0}")]
    Storage(#[from] runnel_storage::Error),
    /// acks=all while the in-sync replicas are fewer than `min.insync.replicas`.
    #[error("in-sync replicas {isr} are fewer than min.insync.replicas {min_isr}")]
    NotEnoughReplicas {
        /// The ISR size.
        isr: usize,
        /// The topic's `min.insync.replicas`.
        min_isr: i64,
    },
    /// An idempotent producer's batch was refused (sequence or epoch).
    #[error("producer batch refused: {0}")]
    Producer(ResponseError),
    /// Writing broker metadata failed.
    #[error("metadata i/o: {0}")]
    MetadataIo(String),
    /// This broker is not the partition's leader (or holds no replica of it).
    #[error("this broker is not the leader of the partition")]
    NotLeaderOrFollower,
    /// The controller quorum did not answer or refused.
    #[error("controller: {0}")]
    Controller(String),
    /// A refusal that is a plain Kafka error code (epochs, timeouts, ...).
    #[error("{0:?}")]
    Kafka(ResponseError),
    /// A controller refusal with its Kafka code and message.
    #[error("{message}")]
    Refused {
        /// The Kafka error code.
        code: ResponseError,
        /// What was wrong.
        message: String,
    },
}

impl BrokerError {
    /// The Kafka error code for this error.
    pub fn kafka(&self) -> ResponseError {
        use runnel_storage::Error as S;
        match self {
            BrokerError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            BrokerError::UnknownTopicId => ResponseError::UnknownTopicId,
            BrokerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            BrokerError::TopicExists(_) => ResponseError::TopicAlreadyExists,
            BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            BrokerError::ThrottlingQuotaExceeded(_) => ResponseError::ThrottlingQuotaExceeded,
            BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            BrokerError::Config(_) => ResponseError::InvalidConfig,
            BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
            BrokerError::InvalidRequiredAcks(_) => ResponseError::InvalidRequiredAcks,
            BrokerError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
            BrokerError::Producer(e) => *e,
            BrokerError::MetadataIo(_) => ResponseError::KafkaStorageError,
            BrokerError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
            BrokerError::Controller(_) => ResponseError::RequestTimedOut,
            BrokerError::Kafka(e) => *e,
            BrokerError::Refused { code, .. } => *code,
            BrokerError::Storage(e) => match e {
                S::Io { .. } => ResponseError::KafkaStorageError,
                S::CorruptBatch(_) | S::CrcMismatch { .. } => ResponseError::CorruptMessage,
                S::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
                S::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
                S::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
                S::NonContiguousAppend { .. } => ResponseError::UnknownServerError,
            },
        }
    }

    /// The code as sent on the wire.
    pub fn code(&self) -> i16 {
        self.kafka().code()
    }
}
