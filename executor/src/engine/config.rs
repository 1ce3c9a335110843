//! What a store-backed run is configured with: the scheduler, its settings,
//! and the stores.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use wukong_dag::ClusterParams;
use wukong_storage::{Coordinator, ObjectStore};

/// Which scheduler runs the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Scheduler {
    /// Decentralized: become, clustering, delayed I/O, local caches.
    Wukong,
    /// Central queue; every input read from and every output written to the store.
    Numpywren,
    /// No store: threads of this process share every value in memory
    /// ([`LocalExecutor`](crate::LocalExecutor)); the in-process upper bound.
    #[cfg_attr(
        feature = "clap",
        value(help = "No store: threads share every value in memory (the in-process upper bound)")
    )]
    Shared,
}

impl Scheduler {
    /// `wukong` or `numpywren`.
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Wukong => "wukong",
            Scheduler::Numpywren => "numpywren",
            Scheduler::Shared => "shared",
        }
    }
}

impl std::str::FromStr for Scheduler {
    type Err = wukong_dag::UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "wukong" => Ok(Scheduler::Wukong),
            "numpywren" => Ok(Scheduler::Numpywren),
            "shared" => Ok(Scheduler::Shared),
            other => Err(wukong_dag::UnknownName {
                what: "scheduler",
                given: other.to_owned(),
                expected: "wukong, numpywren or shared",
            }),
        }
    }
}

/// Settings of a store-backed run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Threads that host executors (local mode).
    pub threads: usize,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Thresholds of the clustering plan (Wukong only).
    pub cluster: ClusterParams,
    /// Byte budget of each executor's local cache (Wukong only).
    pub cache_bytes: u64,
    /// Data on an edge smaller than this is written at once rather than held
    /// under a claim: a claim costs a round trip, as does a small write.
    pub hold_min_bytes: u64,
    /// Keep the job's objects in the store after the run (for inspection);
    /// by default they are deleted once the outputs are read back.
    pub keep_objects: bool,
    /// Fault injection: start every executor twice, as a platform that
    /// retries invocations may. Results must not change.
    pub duplicate_invocations: bool,
    /// Inputs of a task handed to a new executor travel with the invocation
    /// (as well as through the store) while their encoded sizes add up to at
    /// most this many bytes; 0 sends none. Only remote platforms use them.
    pub inline_bytes: u64,
    /// Least time between two looks at an executor's mailbox while it has
    /// work queued, and between two questions about spare capacity: each is
    /// a round trip on remote platforms, where a task may take less. Zero
    /// (local mode): every time.
    pub poll_interval: Duration,
}

impl EngineConfig {
    /// `threads` threads, the Wukong scheduler, default clustering, a 4 GiB
    /// cache per executor, claims for edges of 64 KiB and more.
    pub fn new(threads: usize) -> Self {
        Self {
            threads,
            scheduler: Scheduler::Wukong,
            cluster: ClusterParams::default(),
            cache_bytes: 4 << 30,
            hold_min_bytes: 64 << 10,
            keep_objects: false,
            duplicate_invocations: false,
            inline_bytes: 0,
            poll_interval: Duration::ZERO,
        }
    }
}

/// Where a run keeps its objects and coordination state, and the async
/// runtime that drives network stores.
#[derive(Clone)]
pub struct Stores {
    /// Objects: inputs, intermediates that cross executors, results.
    pub objects: Arc<dyn ObjectStore>,
    /// Arrivals and claims.
    pub coordinator: Arc<dyn Coordinator>,
    /// Drives store futures that do not complete at once (Redis, S3); not
    /// needed for [`MemoryStore`](wukong_storage::MemoryStore).
    pub runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("objects", &self.objects)
            .field("coordinator", &self.coordinator)
            .finish()
    }
}

impl Stores {
    /// One in-memory store for objects and coordination.
    pub fn memory() -> Self {
        let store = Arc::new(wukong_storage::MemoryStore::new());
        Self {
            objects: Arc::clone(&store) as Arc<dyn ObjectStore>,
            coordinator: store,
            runtime: None,
        }
    }
}
