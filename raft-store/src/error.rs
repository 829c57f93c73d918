//! Store errors.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB returned an error.
    #[error("rocksdb {op}: {source}")]
    Rocks {
        /// What was being done.
        op: &'static str,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// A record on disk could not be decoded.
    #[error("corrupt {what} record: {reason}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The write was attempted but the batch failed; nothing of it is durable.
    #[error("batch write failed: {reason}")]
    WriteFailed {
        /// RocksDB's message.
        reason: String,
    },
    /// The store is shut down (or its writer thread died).
    #[error("store is closed")]
    Closed,
    /// The data directory is not usable.
    #[error("cannot open store at {path}: {reason}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError {
        move |source| StoreError::Rocks { op, source }
    }
}
