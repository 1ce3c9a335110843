//! Stores for the tiles and objects that wukong executors exchange.
//!
//! [`SlotStore`] is the in-process store of the embedded mode: one slot per data
//! item of a task graph, each written once, read by any number of threads, and
//! emptied when its last reader is done so that memory follows the live tiles.
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

mod slot;

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
    /// The slot does not exist in this store.
    #[error("slot {slot} is out of range: the store has {len} slots")]
    OutOfRange {
        /// The requested slot.
        slot: usize,
        /// How many slots the store has.
        len: usize,
    },
}
