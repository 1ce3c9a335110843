//! Wrappers that add behaviour to any backend: [`Metered`] counts requests
//! and bytes, [`Cached`] keeps recently used objects in a byte-bounded LRU,
//! [`Faulty`] injects seeded faults for tests, [`Retrying`] retries transient
//! failures with exponential backoff.

mod cached;
mod faulty;
mod metered;
mod retry;

pub use cached::{CacheStats, Cached};
pub use faulty::{FaultConfig, Faulty};
pub use metered::{MeterReport, Metered};
pub use retry::{RetryConfig, Retrying};
