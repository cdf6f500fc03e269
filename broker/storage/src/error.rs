//! Errors of the partition log.

use std::path::PathBuf;

/// What can go wrong in the partition log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a log file failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A record batch is malformed: too short, bad length, or not magic v2.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A record batch's CRC32C does not match its contents.
    #[error("record batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC in the batch header.
        stored: u32,
        /// The CRC computed over the batch.
        computed: u32,
    },
    /// A record batch uses a magic (message format) other than 2.
    #[error("unsupported record batch magic {0}, only v2 is accepted")]
    UnsupportedMagic(i8),
    /// A batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge {
        /// The batch size in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The requested offset is outside `[log start, log end]`.
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset.
        start: i64,
        /// The log end offset.
        end: i64,
    },
    /// A follower append went back below the log end offset.
    #[error("append at offset {offset} is below the log end offset {end}")]
    NonContiguousAppend {
        /// The first offset of the batch.
        offset: i64,
        /// The log end offset.
        end: i64,
    },
}

/// Wraps an I/O error with the path it happened on.
pub(crate) fn io_error(path: &std::path::Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
