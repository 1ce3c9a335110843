//! Executors in other processes: worker processes that take invocations from
//! a queue, and AWS Lambda functions (feature `lambda`). Both share a
//! [`Broker`](wukong_storage::Broker) (queues and mailboxes), a
//! [`Coordinator`](wukong_storage::Coordinator) (arrivals, claims, leases)
//! and an [`ObjectStore`](wukong_storage::ObjectStore): Redis for all three (feature `redis`,
//! objects in S3 with feature `s3`), or one
//! [`MemoryStore`](wukong_storage::MemoryStore) for worker hosts
//! on threads of one process. They run the same executor loop as local mode.
//!
//! The protocol knows no linear algebra: a job's spec names its kernels'
//! backend, and each [`Host`] finds the kernels through its
//! [`KernelRegistry`].
//!
//! A job goes like this:
//! 1. the driver stores the job's spec (the graph, backend, scheduler, lease
//!    length, where to invoke) once at `<job>/spec`, and the input tiles;
//! 2. it invokes the graph's sources: an [`Invocation`] (job, task, attempt)
//!    pushed to the workers' queue, or sent as an asynchronous Lambda event;
//! 3. each invoked executor takes the claim `start/<task>/<attempt>` (so a
//!    duplicated event runs once) and the lease `x/<task>`, which a thread
//!    renews while it runs; it loads the spec (cached per job by a warm
//!    worker), runs, becomes and invokes, releases the lease and pushes its
//!    report to `<job>.reports`;
//! 4. the executor that finishes the last task pushes `done` to `<job>.done`,
//!    where the driver waits (a blocking pop, no busy polling); a failing
//!    executor pushes the error there instead;
//! 5. between messages the driver looks for expired leases: an executor that
//!    died (a killed worker, a lost Lambda) stops renewing, and its start task
//!    is invoked again with the next attempt number. Tasks are deterministic
//!    and outputs single-assignment, so running part of the graph twice
//!    cannot change a result.

mod connection;
mod dispatch;
mod driver;
mod host;
mod protocol;
mod workers;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wukong_dag::Operation;
use wukong_storage::{StorageError, StoredValue};

use crate::Kernels;

pub use connection::{Connection, ObjectTarget};
pub use driver::{RemoteConfig, Submission, run_job};
pub use host::{Handled, Host};
pub use protocol::{InlineTile, Invocation, Target};
pub use workers::{WorkerProcesses, WorkerThreads};

/// Where a [`Host`] finds the kernels of a job: the operation type its
/// graphs are made of, and the kernels for each backend name a job's spec
/// may give.
pub trait KernelRegistry: Send + Sync + 'static {
    /// The graphs' operation.
    type Op: Operation + Send + Sync + Serialize + DeserializeOwned;
    /// The values on the graphs' edges.
    type Value: StoredValue;
    /// The kernels' error, sent to the driver when a kernel fails.
    type Error: std::error::Error + Send + Sync + Serialize + DeserializeOwned + 'static;
    /// The kernels of one backend.
    type Kernels: Kernels<Self::Op, Value = Self::Value, Error = Self::Error> + Send;

    /// The kernels of the backend named `backend`.
    fn kernels(
        &self,
        backend: &str,
    ) -> Result<Self::Kernels, Box<dyn std::error::Error + Send + Sync>>;
}

/// Largest invocation payload sent or accepted. An invocation names a job,
/// a task and an attempt: a few hundred bytes; anything near this size is
/// not ours.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// Version of the payload and spec formats.
const FORMAT: u32 = 1;

/// What went wrong outside this process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// An invocation payload was rejected; nothing ran.
    #[error("rejected invocation payload: {reason}")]
    Payload {
        /// What is wrong with it.
        reason: String,
    },
    /// The job named by an invocation has no spec in the store.
    #[error("job {job} is unknown to this store (finished, deleted, or never submitted): {detail}")]
    UnknownJob {
        /// The job.
        job: String,
        /// What the store said.
        detail: String,
    },
    /// An executor of the job failed; the job was stopped.
    #[error("executor at task {task} failed: {message}")]
    Executor {
        /// The task it started with.
        task: u32,
        /// Its error.
        message: String,
    },
    /// The platform refused an invocation.
    #[error("an executor could not be started: {message}")]
    Invocation {
        /// The platform's answer.
        message: String,
    },
    /// No executor started within the time allowed.
    #[error(
        "no executor started within {seconds} s: is a worker (`wukong worker --redis …`) or the Lambda function running against this Redis?"
    )]
    NoExecutors {
        /// The time allowed.
        seconds: u64,
    },
    /// The job did not finish within the time allowed.
    #[error("the job did not finish within {seconds} s ({started} executors started)")]
    TimedOut {
        /// The time allowed.
        seconds: u64,
        /// Executors that started.
        started: i64,
    },
    /// A worker process could not be started or a message not encoded.
    #[error("{what}: {detail}")]
    Setup {
        /// What failed.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The broker, coordinator or object store failed.
    #[error(transparent)]
    Store(#[from] StorageError),
}
