//! Stores for the tiles and objects that wukong executors exchange.
//!
//! - [`ObjectStore`] (with [`DynObjectStore`] and the [`ObjectStoreExt`]
//!   conveniences): objects by [`ObjectKey`], every key inside one job's
//!   namespace, with single-assignment puts ([`PutMode::Create`]).
//! - [`Coordinator`]: idempotent fan-in arrivals (one flag per edge) and leases.
//! - [`Broker`]: queues, counters, presence sets and mailboxes between a
//!   job's driver and its executors, waited on through a [`Listener`].
//! - [`MemoryStore`] implements all three in memory, [`RedisStore`] (feature
//!   `redis`) in Redis; [`codec`] stores tiles as
//!   `.npy` with a CRC-32 trailer. [`ObjectStore::put_value`] and
//!   [`ObjectStore::get_object`] pass tiles as values, which the in-memory
//!   store keeps as they are (no copy, nothing to corrupt) and the others
//!   store as those bytes.
//! - [`wrap`]: [`wrap::Metered`], [`wrap::Cached`], [`wrap::Faulty`] and
//!   [`wrap::Retrying`] add metering, a local LRU cache, seeded fault injection
//!   and retries with backoff to any backend.
//! - [`SlotStore`] is the embedded executor's store: one slot per data item of a
//!   task graph, each written once and emptied after its last reader.
//!
//! ```
//! use std::sync::Arc;
//! use wukong_storage::{SlotStore, StorageError};
//!
//! let store = SlotStore::new(2);
//! store.put(0, Arc::new("tile")).unwrap();
//! assert!(matches!(store.put(0, Arc::new("again")), Err(StorageError::AlreadyExists { slot: 0 })));
//! assert_eq!(*store.get(0).unwrap(), "tile");
//! assert!(matches!(store.get(1), Err(StorageError::NotFound { slot: 1 })));
//! ```

mod broker;
pub mod clock;
pub mod codec;
mod key;
mod memory;
mod object;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "s3")]
mod s3_store;
mod slot;
pub mod wrap;

pub use broker::{Broker, Listener, Woken};
pub use clock::{Clock, SystemClock};
pub use codec::{SharedValue, StoredValue};
pub use key::{JobId, ObjectKey};
pub use memory::MemoryStore;
pub use object::{
    Arrival, Coordinator, DynObjectStore, Edge, Hold, Join, Joined, Lease, Object, ObjectStore,
    ObjectStoreExt, PutMode,
};
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
#[cfg(feature = "s3")]
pub use s3_store::{S3Config, S3Credentials, S3Store};
pub use slot::SlotStore;

/// What went wrong in a store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    /// Nothing is stored in the slot.
    #[error("slot {slot} holds no value")]
    NotFound {
        /// The empty slot.
        slot: usize,
    },
    /// A single-assignment slot was written a second time; the first value is kept.
    #[error("slot {slot} was already written; single-assignment values are never replaced")]
    AlreadyExists {
        /// The slot.
        slot: usize,
    },
    /// No object is stored at the key.
    #[error("no object at {key}")]
    KeyNotFound {
        /// The key.
        key: ObjectKey,
    },
    /// A single-assignment put found an object already there; it was kept.
    #[error("an object already exists at {key}; single-assignment objects are never replaced")]
    KeyExists {
        /// The key.
        key: ObjectKey,
    },
    /// A job id or key name is malformed.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected text.
        key: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A stored tile failed its checks; the bytes were not used.
    #[error("corrupt tile at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: ObjectKey,
        /// What is wrong.
        reason: &'static str,
    },
    /// An arrival names an edge outside the child's in-degree.
    #[error("arrival of edge {edge} at task {child}, whose in-degree is {in_degree}")]
    BadArrival {
        /// The child task.
        child: u64,
        /// The edge.
        edge: u32,
        /// The child's in-degree.
        in_degree: u32,
    },
    /// The backend cannot be reached (refused, timed out, connection dropped).
    #[error("{backend} at {endpoint} is unreachable: {detail}")]
    Unavailable {
        /// `redis` or `s3`.
        backend: &'static str,
        /// The server, without credentials.
        endpoint: String,
        /// What the client reported.
        detail: String,
    },
    /// The backend refused the credentials.
    #[error("{backend} at {endpoint} refused the credentials: {detail}")]
    Unauthorized {
        /// `redis` or `s3`.
        backend: &'static str,
        /// The server, without credentials.
        endpoint: String,
        /// What the server said.
        detail: String,
    },
    /// The backend answered with an error.
    #[error("{backend} at {endpoint} failed: {detail}")]
    Backend {
        /// `redis` or `s3`.
        backend: &'static str,
        /// The server, without credentials.
        endpoint: String,
        /// What the server said.
        detail: String,
    },
    /// A configuration value is malformed.
    #[error("invalid {what}: {detail}")]
    InvalidConfig {
        /// Which setting.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The slot does not exist in this store.
    #[error("slot {slot} is out of range: the store has {len} slots")]
    OutOfRange {
        /// The requested slot.
        slot: usize,
        /// How many slots the store has.
        len: usize,
    },
}
