//! Executors in other processes: worker processes that take invocations from
//! a queue, and AWS Lambda functions (feature `lambda`). Both share a
//! [`Broker`] (queues and mailboxes), a [`Coordinator`] (arrivals, claims,
//! leases) and an [`ObjectStore`]: Redis for all three (feature `redis`,
//! objects in S3 with feature `s3`), or one [`MemoryStore`] for worker hosts
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

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wukong_dag::{Dag, DataId, Operation, TaskId};
use wukong_storage::{
    Broker, Coordinator, JobId, Listener, MemoryStore, ObjectStore, ObjectStoreExt, PutMode,
    StorageError, StoredValue, Woken,
};

use crate::{
    Delivery, Dispatcher, Engine, EngineConfig, ExecError, ExecutorRecord, ExecutorReport,
    ExecutorSlot, InvokeError, IoReport, Kernels, RunOutcome, RunReport, Scheduler, Stores,
    TaskRecord, Waited, WorkerCache,
};

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

/// One invocation: start an executor of `job` at `task`. `attempt` counts
/// re-invocations after an executor was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invocation {
    /// Format version.
    pub wukong: u32,
    /// The job.
    pub job: String,
    /// The task the executor starts with.
    pub task: u32,
    /// 0 for the first invocation of this start, then 1, 2, …
    pub attempt: u32,
    /// Small inputs of the task, encoded as stored (they are in the store too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<InlineTile>,
}

/// A tile carried by an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineTile {
    /// The data item.
    pub data: u32,
    /// Its stored encoding (`.npy` with a checksum), in base64.
    pub bytes: String,
}

impl Invocation {
    /// The invocation of `task` in `job`.
    pub fn new(job: &JobId, task: TaskId, attempt: u32) -> Self {
        Self {
            wukong: FORMAT,
            job: job.as_str().to_owned(),
            task: task.0,
            attempt,
            inline: Vec::new(),
        }
    }

    /// Carries `inputs` (encoded tiles) along.
    pub fn with_inputs(mut self, inputs: &[(DataId, Vec<u8>)]) -> Self {
        use base64::Engine as _;
        self.inline = inputs
            .iter()
            .map(|(data, bytes)| InlineTile {
                data: data.0,
                bytes: base64::engine::general_purpose::STANDARD.encode(bytes),
            })
            .collect();
        self
    }

    /// The carried inputs, decoded from base64 (their contents are checked
    /// when the executor decodes them as tiles).
    pub fn inputs(&self) -> Result<Vec<(DataId, Vec<u8>)>, RemoteError> {
        use base64::Engine as _;
        self.inline
            .iter()
            .map(|tile| {
                base64::engine::general_purpose::STANDARD
                    .decode(&tile.bytes)
                    .map(|bytes| (DataId(tile.data), bytes))
                    .map_err(|e| RemoteError::Payload {
                        reason: format!("inline tile {}: {e}", tile.data),
                    })
            })
            .collect()
    }

    /// The JSON payload, checked against [`MAX_PAYLOAD_BYTES`] before sending.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RemoteError> {
        let bytes = serde_json::to_vec(self).map_err(|e| RemoteError::Payload {
            reason: e.to_string(),
        })?;
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(RemoteError::Payload {
                reason: format!(
                    "{} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }

    /// Checks and decodes a payload: size, JSON shape, format version, job id.
    pub fn parse(bytes: &[u8]) -> Result<(Self, JobId), RemoteError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(RemoteError::Payload {
                reason: format!(
                    "{} bytes, more than the limit of {MAX_PAYLOAD_BYTES}",
                    bytes.len()
                ),
            });
        }
        let invocation: Self = serde_json::from_slice(bytes).map_err(|e| RemoteError::Payload {
            reason: format!("not a wukong invocation: {e}"),
        })?;
        if invocation.wukong != FORMAT {
            return Err(RemoteError::Payload {
                reason: format!(
                    "format {} but this executor speaks format {FORMAT}",
                    invocation.wukong
                ),
            });
        }
        let job = JobId::new(invocation.job.clone()).map_err(|e| RemoteError::Payload {
            reason: e.to_string(),
        })?;
        Ok((invocation, job))
    }
}

/// Where executors of a job are started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Worker processes taking invocations from this queue.
    Queue {
        /// The queue's name.
        name: String,
    },
    /// A Lambda function.
    Lambda {
        /// The function's name or ARN.
        function: String,
        /// How many executors may run at once.
        concurrency: u32,
    },
}

/// What every executor of a job needs to know, stored once per job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobSpec {
    format: u32,
    backend: String,
    scheduler: String,
    cache_bytes: u64,
    hold_min_bytes: u64,
    inline_bytes: u64,
    lease_ms: u64,
    target: Target,
    duplicate_invocations: bool,
    dag: Vec<u8>,
}

/// A message on a job's `done` queue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Done,
    Failed {
        task: u32,
        message: String,
        #[serde(default)]
        failure: Failure,
    },
    Unsent {
        message: String,
    },
}

/// How an executor failed, as far as the driver can rebuild the error: the
/// same [`ExecError`] as in local mode, with the kernel's own error value.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Failure {
    Kernel {
        task: u32,
        label: String,
        error: serde_json::Value,
    },
    Panicked {
        task: u32,
        label: String,
        message: String,
    },
    WrongOutputCount {
        task: u32,
        label: String,
        expected: usize,
        got: usize,
    },
    NoSuchTask {
        task: u32,
        tasks: usize,
    },
    /// Anything else (a store that failed, an invocation refused): the
    /// message is all the driver gets.
    #[default]
    Untyped,
}

impl Failure {
    fn of<E: std::error::Error + Serialize>(error: &ExecError<E>) -> Self {
        match error {
            ExecError::Task {
                task,
                label,
                source,
            } => match serde_json::to_value(source) {
                Ok(error) => Failure::Kernel {
                    task: task.0,
                    label: label.clone(),
                    error,
                },
                Err(_) => Failure::Untyped,
            },
            ExecError::Panicked {
                task,
                label,
                message,
            } => Failure::Panicked {
                task: task.0,
                label: label.clone(),
                message: message.clone(),
            },
            ExecError::WrongOutputCount {
                task,
                label,
                expected,
                got,
            } => Failure::WrongOutputCount {
                task: task.0,
                label: label.clone(),
                expected: *expected,
                got: *got,
            },
            ExecError::NoSuchTask { task, tasks } => Failure::NoSuchTask {
                task: task.0,
                tasks: *tasks,
            },
            _ => Failure::Untyped,
        }
    }

    /// The error the driver returns for the executor at `start` that failed
    /// with `message`.
    fn rebuild<E: std::error::Error + DeserializeOwned>(
        self,
        start: u32,
        message: String,
    ) -> ExecError<E> {
        let untyped = |message| {
            ExecError::from(RemoteError::Executor {
                task: start,
                message,
            })
        };
        match self {
            Failure::Kernel { task, label, error } => match serde_json::from_value(error) {
                Ok(source) => ExecError::Task {
                    task: TaskId(task),
                    label,
                    source,
                },
                Err(_) => untyped(message),
            },
            Failure::Panicked {
                task,
                label,
                message,
            } => ExecError::Panicked {
                task: TaskId(task),
                label,
                message,
            },
            Failure::WrongOutputCount {
                task,
                label,
                expected,
                got,
            } => ExecError::WrongOutputCount {
                task: TaskId(task),
                label,
                expected,
                got,
            },
            Failure::NoSuchTask { task, tasks } => ExecError::NoSuchTask {
                task: TaskId(task),
                tasks,
            },
            Failure::Untyped => untyped(message),
        }
    }
}

/// A message on a job's `reports` queue.
#[derive(Debug, Serialize, Deserialize)]
struct ReportMessage {
    started_unix_ms: u64,
    report: ExecutorReport,
}

fn done_queue(job: &JobId) -> String {
    format!("{job}.done")
}

fn reports_queue(job: &JobId) -> String {
    format!("{job}.reports")
}

fn started_counter(job: &JobId) -> String {
    format!("{job}.started")
}

fn idle_set(queue: &str) -> String {
    format!("{queue}.idle")
}

/// How long a worker waits on its queue before renewing its idle mark.
const IDLE_WAIT: Duration = Duration::from_secs(1);

fn lease_name(task: TaskId) -> String {
    format!("x/{}", task.0)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The CA named by `WUKONG_REDIS_CA`, for `rediss://` URLs.
#[cfg(feature = "redis")]
fn ca_from_env(redis_url: &str) -> Result<Option<Vec<u8>>, StorageError> {
    match std::env::var_os("WUKONG_REDIS_CA") {
        Some(path) if !path.is_empty() && redis_url.starts_with("rediss://") => {
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| StorageError::InvalidConfig {
                    what: "WUKONG_REDIS_CA",
                    detail: format!("{}: {e}", Path::new(&path).display()),
                })
        }
        _ => Ok(None),
    }
}

fn setup(what: &'static str) -> impl Fn(String) -> RemoteError {
    move |detail| RemoteError::Setup { what, detail }
}

/// A worker host's listener, shared by the executors it runs.
type SharedListener = Mutex<Box<dyn Listener>>;

/// Shared state of a remote deployment: the broker, the coordinator and the
/// object store (Redis, optionally S3 for objects; or one in-memory store),
/// and the async runtime that drives them.
#[derive(Clone)]
pub struct Connection {
    broker: Arc<dyn Broker>,
    endpoint: String,
    stores: Stores,
    runtime: tokio::runtime::Handle,
    _io: Option<Arc<tokio::runtime::Runtime>>,
    #[cfg(feature = "lambda")]
    lambda: Option<crate::lambda::LambdaClient>,
}

/// The async runtime behind network stores: one thread, named `wukong-io`.
pub(crate) fn io_runtime() -> Result<tokio::runtime::Runtime, RemoteError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wukong-io")
        .enable_all()
        .build()
        .map_err(|e| setup("starting the I/O runtime")(e.to_string()))
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.endpoint)
            .finish()
    }
}

/// Where a deployment keeps its objects.
#[derive(Debug, Clone, Default)]
pub struct ObjectTarget {
    /// An S3 bucket for tiles (feature `s3`); `None` keeps them in Redis.
    pub s3_bucket: Option<String>,
    /// A custom S3 endpoint (e.g. a local server); `None` for AWS.
    pub s3_endpoint: Option<String>,
}

impl Connection {
    /// One in-memory store as broker, coordinator and object store, on a
    /// private async runtime: clones share it, so worker hosts on threads of
    /// this process and a driver can run jobs with no server.
    pub fn in_memory() -> Result<Self, RemoteError> {
        let store = Arc::new(MemoryStore::new());
        let stores = Stores {
            objects: Arc::clone(&store) as Arc<dyn ObjectStore>,
            coordinator: Arc::clone(&store) as Arc<dyn Coordinator>,
            runtime: None,
        };
        Self::new(store, stores, "memory")
    }

    /// A connection over `broker` and `stores`, named `name` in reports. The
    /// runtime of `stores` drives both; without one, a private runtime does.
    pub fn new(
        broker: Arc<dyn Broker>,
        mut stores: Stores,
        name: impl Into<String>,
    ) -> Result<Self, RemoteError> {
        let (runtime, io) = match &stores.runtime {
            Some(runtime) => (runtime.clone(), None),
            None => {
                let io = io_runtime()?;
                (io.handle().clone(), Some(Arc::new(io)))
            }
        };
        stores.runtime = Some(runtime.clone());
        Ok(Self {
            stores,
            endpoint: name.into(),
            broker,
            runtime,
            _io: io,
            #[cfg(feature = "lambda")]
            lambda: None,
        })
    }

    #[cfg(feature = "redis")]
    /// Connects to Redis at `redis_url` and, if `objects` names a bucket, S3,
    /// on a private async runtime. A `rediss://` server whose certificate is
    /// signed by a private CA is trusted when `WUKONG_REDIS_CA` names that
    /// CA's PEM file.
    pub fn open(redis_url: &str, objects: &ObjectTarget) -> Result<Self, RemoteError> {
        let pem = ca_from_env(redis_url)?;
        Self::open_private(redis_url, pem.as_deref(), objects)
    }

    #[cfg(feature = "redis")]
    /// Like [`open`](Self::open), trusting the PEM-encoded CA `root_certificate`
    /// for a `rediss://` server.
    pub fn open_with_root_certificate(
        redis_url: &str,
        root_certificate: &[u8],
        objects: &ObjectTarget,
    ) -> Result<Self, RemoteError> {
        Self::open_private(redis_url, Some(root_certificate), objects)
    }

    #[cfg(feature = "redis")]
    fn open_private(
        redis_url: &str,
        root_certificate: Option<&[u8]>,
        objects: &ObjectTarget,
    ) -> Result<Self, RemoteError> {
        let io = io_runtime()?;
        let mut connection =
            Self::connect(io.handle().clone(), redis_url, root_certificate, objects)?;
        connection._io = Some(Arc::new(io));
        Ok(connection)
    }

    #[cfg(feature = "redis")]
    /// Like [`open`](Self::open) on an existing multi-threaded runtime; call
    /// it outside that runtime's threads (or from `spawn_blocking`).
    pub fn open_on(
        runtime: tokio::runtime::Handle,
        redis_url: &str,
        objects: &ObjectTarget,
    ) -> Result<Self, RemoteError> {
        let pem = ca_from_env(redis_url)?;
        Self::connect(runtime, redis_url, pem.as_deref(), objects)
    }

    #[cfg(feature = "redis")]
    fn connect(
        runtime: tokio::runtime::Handle,
        redis_url: &str,
        root_certificate: Option<&[u8]>,
        objects: &ObjectTarget,
    ) -> Result<Self, RemoteError> {
        let redis = match root_certificate {
            Some(pem) => runtime.block_on(
                wukong_storage::RedisStore::connect_with_root_certificate(redis_url, pem),
            )?,
            None => runtime.block_on(wukong_storage::RedisStore::connect(redis_url))?,
        };
        let redis = Arc::new(redis);
        let object_store: Arc<dyn ObjectStore> = match &objects.s3_bucket {
            None => Arc::clone(&redis) as Arc<dyn ObjectStore>,
            #[cfg(feature = "s3")]
            Some(bucket) => {
                let mut config = wukong_storage::S3Config::new(bucket.clone());
                if let Some(endpoint) = &objects.s3_endpoint {
                    config.endpoint = Some(endpoint.clone());
                    config.path_style = true;
                }
                Arc::new(runtime.block_on(wukong_storage::S3Store::connect(config))?)
            }
            #[cfg(not(feature = "s3"))]
            Some(_) => {
                return Err(StorageError::InvalidConfig {
                    what: "S3",
                    detail: "this build has no S3 support: build with `--features s3`".into(),
                }
                .into());
            }
        };
        Ok(Self {
            stores: Stores {
                objects: object_store,
                coordinator: Arc::clone(&redis) as Arc<dyn Coordinator>,
                runtime: Some(runtime.clone()),
            },
            endpoint: redis.endpoint().to_owned(),
            broker: redis,
            runtime,
            _io: None,
            #[cfg(feature = "lambda")]
            lambda: None,
        })
    }

    /// Invokes Lambda functions through `client` (feature `lambda`).
    #[cfg(feature = "lambda")]
    pub fn with_lambda(mut self, client: crate::lambda::LambdaClient) -> Self {
        self.lambda = Some(client);
        self
    }

    /// The object store and coordinator executors share.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The async runtime the stores run on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The Redis server, without credentials.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn block<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        self.runtime.block_on(future)
    }

    /// The lease holder name of an executor running an attempt.
    fn holder(worker: u32, attempt: u32, executor: u32) -> String {
        format!("a{attempt}.w{worker}.e{executor}")
    }

    /// Takes the claim of an invocation and the lease of its start for
    /// `holder`; `false` if another executor has either (a duplicate).
    fn take_start(
        &self,
        job: &JobId,
        task: TaskId,
        attempt: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let coordinator = &self.stores.coordinator;
        let start_claim = format!("start/{}/{attempt}", task.0);
        if self.block(coordinator.claim(job, &start_claim, holder))? != holder {
            return Ok(false);
        }
        if !self.block(coordinator.acquire(job, &lease_name(task), holder, ttl))? {
            return Ok(false);
        }
        Ok(true)
    }

    /// Tells the driver that the executor of `job` at `task` failed.
    fn fail(&self, job: &JobId, task: TaskId, message: String, failure: Failure) -> Handled {
        let outcome = Outcome::Failed {
            task: task.0,
            message: message.clone(),
            failure,
        };
        if let Err(error) = self.push_outcome(job, &outcome) {
            eprintln!(
                "wukong: the failure of the executor at task {task} of job {job} cannot be reported ({error}); the driver will time out: {message}"
            );
        }
        Handled::Failed { message }
    }

    fn push_outcome(&self, job: &JobId, outcome: &Outcome) -> Result<(), InvokeError> {
        let message = serde_json::to_vec(outcome).map_err(|e| InvokeError {
            platform: "redis",
            detail: e.to_string(),
        })?;
        self.block(self.broker.push_message(&done_queue(job), &message))
            .map_err(|e| InvokeError {
                platform: "redis",
                detail: e.to_string(),
            })
    }

    fn invoke(&self, target: &Target, invocation: &Invocation) -> Result<(), InvokeError> {
        let payload = invocation.to_bytes().map_err(|e| InvokeError {
            platform: "payload",
            detail: e.to_string(),
        })?;
        match target {
            Target::Queue { name } => self
                .block(self.broker.push_message(name, &payload))
                .map_err(|e| InvokeError {
                    platform: "processes",
                    detail: e.to_string(),
                }),
            #[cfg(feature = "lambda")]
            Target::Lambda { function, .. } => match &self.lambda {
                Some(client) => {
                    let failure = crate::lambda::FailureReport {
                        broker: Arc::clone(&self.broker),
                        queue: format!("{}.done", invocation.job),
                        message: failed_invocation,
                    };
                    client.invoke(&self.runtime, function, payload, failure)
                }
                None => Err(InvokeError {
                    platform: "lambda",
                    detail: "no Lambda client configured".into(),
                }),
            },
            #[cfg(not(feature = "lambda"))]
            Target::Lambda { .. } => Err(InvokeError {
                platform: "lambda",
                detail: "this build has no Lambda support: build with `--features lambda`".into(),
            }),
        }
    }

    fn spare_capacity(&self, target: &Target) -> usize {
        match target {
            Target::Queue { name } => {
                let idle = idle_set(name);
                let spare = self
                    .broker
                    .present_beyond_queued(&idle, IDLE_WAIT * 3, name);
                self.block(spare).map_or(0, |spare| spare as usize)
            }
            Target::Lambda { concurrency, .. } => *concurrency as usize,
        }
    }
}

/// The outcome message of a job whose invocation failed.
#[cfg(feature = "lambda")]
fn failed_invocation(detail: String) -> Vec<u8> {
    serde_json::to_vec(&Outcome::Unsent {
        message: detail.clone(),
    })
    .unwrap_or_else(|_| detail.into_bytes())
}

/// Starts executors of one job for an executor or the driver.
struct JobDispatcher<'a> {
    connection: &'a Connection,
    job: &'a JobId,
    target: &'a Target,
    /// Send every invocation twice, as an at-least-once platform may.
    duplicate: bool,
    /// The executor's start task (none for the driver): it claims children
    /// and takes deliveries under this name, as does whoever re-runs its work.
    start: Option<TaskId>,
    /// Messages of the mailbox read so far.
    read: AtomicU32,
    /// Where the executor may take over starts while it waits (worker processes).
    waiting: Option<Waiting<'a>>,
    /// Starts taken over, each with its own claims, mailbox and lease.
    adopted: Mutex<Vec<Adopted>>,
}

/// A worker process's queue, from which an executor that holds claims and
/// has nothing to run takes over starts of its job.
struct Waiting<'a> {
    /// The worker's number, for lease holder names.
    worker: u32,
    listener: &'a SharedListener,
    queue: &'a str,
    /// The worker's name in the queue's idle set.
    member: &'a str,
    /// The executor's number, for lease holder names.
    executor: u32,
    lease: Duration,
    tasks: usize,
    /// When the job's spec was last seen in the store.
    checked: Mutex<Instant>,
    /// When the worker last marked itself idle, if it has not unmarked since.
    marked: Mutex<Option<Instant>>,
}

/// A start an executor took over: its mailbox cursor, and its lease, renewed
/// until the executor ends.
struct Adopted {
    start: TaskId,
    read: u32,
    holder: String,
    _renewal: Renewal,
}

/// How long a waiting executor blocks on the queue and its mailboxes' bells
/// before it renews its idle mark and checks that the job still exists.
const WAIT_SLICE: Duration = Duration::from_millis(100);

fn mailbox_name(job: &JobId, start: u32) -> String {
    format!("{job}.mb.{start}")
}

fn mail_error(error: StorageError) -> InvokeError {
    InvokeError {
        platform: "redis",
        detail: error.to_string(),
    }
}

impl JobDispatcher<'_> {
    /// The executor's mailboxes: its own (origin `None`), then those of the
    /// starts in `adopted`, each with its origin and read cursor.
    fn mailboxes(&self, adopted: &[Adopted]) -> Vec<(Option<TaskId>, String, u32)> {
        let own = self.start.map(|start| {
            let name = mailbox_name(self.job, start.0);
            (None, name, self.read.load(Ordering::Relaxed))
        });
        let taken = adopted
            .iter()
            .map(|a| (Some(a.start), mailbox_name(self.job, a.start.0), a.read));
        own.into_iter().chain(taken).collect()
    }

    /// What was delivered to the executor's mailboxes (its own and those of
    /// the starts it took over) past their read cursors, in one round trip.
    fn read_mail(&self, close: bool) -> Result<Vec<Delivery>, InvokeError> {
        let mut adopted = self.adopted.lock().unwrap_or_else(|p| p.into_inner());
        let boxes = self.mailboxes(&adopted);
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<(&str, usize)> = boxes
            .iter()
            .map(|(_, name, from)| (name.as_str(), *from as usize))
            .collect();
        let read = self
            .connection
            .block(self.connection.broker.read_mailboxes(&names, close))
            .map_err(mail_error)?;
        let mut mail = Vec::new();
        for ((origin, name, _), messages) in boxes.iter().zip(read) {
            let count = messages.len() as u32;
            for m in messages {
                let task = std::str::from_utf8(&m)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(TaskId)
                    .ok_or_else(|| InvokeError {
                        platform: "redis",
                        detail: format!("mailbox {name} holds {m:?}, which names no task"),
                    })?;
                mail.push((task, *origin));
            }
            match origin {
                None => {
                    self.read.fetch_add(count, Ordering::Relaxed);
                }
                Some(start) => {
                    if let Some(a) = adopted.iter_mut().find(|a| a.start == *start) {
                        a.read += count;
                    }
                }
            }
        }
        Ok(mail)
    }

    /// Gives up the leases of the starts taken over (after the executor has
    /// ended and written what it held).
    fn release_adopted(&self) -> Result<(), StorageError> {
        let adopted = std::mem::take(&mut *self.adopted.lock().unwrap_or_else(|p| p.into_inner()));
        for start in adopted {
            let Adopted { start, holder, .. } = start;
            self.connection
                .block(self.connection.stores.coordinator.release(
                    self.job,
                    &lease_name(start),
                    &holder,
                ))?;
        }
        Ok(())
    }

    /// Takes over the start in `payload` if it is one of this job's and no
    /// other executor has it. An invocation of another job goes back to the
    /// head of the queue, and this executor ends so that its worker is free.
    fn adopt(&self, waiting: &Waiting<'_>, payload: Vec<u8>) -> Waited {
        let (invocation, job) = match Invocation::parse(&payload) {
            Ok(parsed) => parsed,
            Err(error) => {
                eprintln!("wukong worker: {error}");
                return Waited::Nothing;
            }
        };
        if job != *self.job {
            let returned = self
                .connection
                .broker
                .return_message(waiting.queue, &payload);
            if let Err(error) = self.connection.block(returned) {
                eprintln!(
                    "wukong worker: an invocation of job {job} could not be queued again: {error}"
                );
            }
            return Waited::End;
        }
        let task = TaskId(invocation.task);
        let inline = match invocation.inputs() {
            Ok(inline) if task.index() < waiting.tasks => inline,
            _ => {
                eprintln!("wukong worker: rejected an invocation of task {task} of job {job}");
                return Waited::Nothing;
            }
        };
        // A start this executor runs already (a duplicated invocation).
        let adopted = |a: &Adopted| a.start == task;
        if self.start == Some(task)
            || self
                .adopted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(adopted)
        {
            return Waited::Nothing;
        }
        let holder = Connection::holder(waiting.worker, invocation.attempt, waiting.executor);
        let lease = lease_name(task);
        // Once the start's claim is taken, only this executor will run it:
        // if it cannot, the job fails with the reason rather than wait for it.
        let failed = |error: StorageError| {
            let message = format!("an executor could not take over task {task}: {error}");
            self.connection.fail(&job, task, message, Failure::Untyped);
            Waited::End
        };
        match self
            .connection
            .take_start(&job, task, invocation.attempt, &holder, waiting.lease)
        {
            Ok(true) => {}
            Ok(false) => return Waited::Nothing,
            Err(error) => return failed(error),
        }
        let renewal = Renewal::start(self.connection, &job, &lease, &holder, waiting.lease);
        let mailbox = mailbox_name(&job, task.0);
        if let Err(error) = self
            .connection
            .block(self.connection.broker.open_mailbox(&mailbox))
        {
            drop(renewal);
            let coordinator = &self.connection.stores.coordinator;
            let _ = self
                .connection
                .block(coordinator.release(&job, &lease, &holder));
            return failed(error);
        }
        self.adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Adopted {
                start: task,
                read: 0,
                holder,
                _renewal: renewal,
            });
        Waited::Start(task, inline)
    }
}

impl Dispatcher for JobDispatcher<'_> {
    fn invoke(&self, task: TaskId, priority: f64) -> Result<(), InvokeError> {
        self.invoke_with_inputs(task, priority, Vec::new())
    }

    fn invoke_with_inputs(
        &self,
        task: TaskId,
        _priority: f64,
        inputs: crate::InlineInputs,
    ) -> Result<(), InvokeError> {
        let mut invocation = Invocation::new(self.job, task, 0).with_inputs(&inputs);
        // Inline inputs are a shortcut; if they make the payload too large,
        // the executor reads them from the store like the others.
        if invocation.to_bytes().is_err() {
            invocation.inline.clear();
        }
        for _ in 0..1 + usize::from(self.duplicate) {
            self.connection.invoke(self.target, &invocation)?;
        }
        Ok(())
    }

    fn spare_capacity(&self) -> usize {
        self.connection.spare_capacity(self.target)
    }

    fn finished(&self) -> Result<(), InvokeError> {
        self.connection.push_outcome(self.job, &Outcome::Done)
    }

    fn open_mailbox(&self) -> Result<bool, InvokeError> {
        let Some((_, mailbox, _)) = self.mailboxes(&[]).pop() else {
            return Ok(false);
        };
        self.connection
            .block(self.connection.broker.open_mailbox(&mailbox))
            .map_err(mail_error)?;
        Ok(true)
    }

    fn holder(&self, origin: Option<TaskId>) -> String {
        origin
            .or(self.start)
            .map_or_else(String::new, |start| format!("s{}", start.0))
    }

    fn take_mail(&self) -> Result<Vec<Delivery>, InvokeError> {
        self.read_mail(false)
    }

    fn close_mailbox(&self) -> Result<Vec<Delivery>, InvokeError> {
        self.read_mail(true)
    }

    fn wait_for_start(&self) -> Result<Waited, InvokeError> {
        let Some(waiting) = &self.waiting else {
            return Ok(Waited::End);
        };
        let redis = &self.connection.broker;
        // A job that failed or finished elsewhere is deleted: stop waiting.
        {
            let mut checked = waiting.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() >= WAIT_SLICE {
                let key = self.job.key("spec").map_err(mail_error)?;
                if !self
                    .connection
                    .block(self.connection.stores.objects.exists(&key))
                    .map_err(mail_error)?
                {
                    return Ok(Waited::End);
                }
                *checked = Instant::now();
            }
        }
        // Marked idle while waiting and while running what was delivered
        // (short), so that busy executors hand over work; the mark is
        // renewed as the worker's own loop does.
        let idle = idle_set(waiting.queue);
        let mut marked = waiting.marked.lock().unwrap_or_else(|p| p.into_inner());
        if marked.is_none_or(|t| t.elapsed() >= IDLE_WAIT) {
            self.connection
                .block(redis.mark_present(&idle, waiting.member, true))
                .map_err(mail_error)?;
            *marked = Some(Instant::now());
        }
        let mailboxes: Vec<String> = {
            let adopted = self.adopted.lock().unwrap_or_else(|p| p.into_inner());
            let boxes = self.mailboxes(&adopted);
            boxes.into_iter().map(|(_, name, _)| name).collect()
        };
        let woken = {
            let mut listener = waiting.listener.lock().unwrap_or_else(|p| p.into_inner());
            self.connection
                .block(listener.wait(waiting.queue, &mailboxes, WAIT_SLICE))
        };
        Ok(match woken.map_err(mail_error)? {
            Woken::Message(payload) => {
                // A stale mark only makes others hand over work a little early.
                let _ = self
                    .connection
                    .block(redis.mark_present(&idle, waiting.member, false));
                *marked = None;
                self.adopt(waiting, payload)
            }
            Woken::Mail | Woken::Timeout => Waited::Nothing,
        })
    }

    fn deliver(&self, holder: &str, task: TaskId) -> Result<bool, InvokeError> {
        let Some(start) = holder.strip_prefix('s').and_then(|s| s.parse::<u32>().ok()) else {
            return Ok(false);
        };
        self.connection
            .block(self.connection.broker.deliver(
                &mailbox_name(self.job, start),
                task.0.to_string().as_bytes(),
            ))
            .map_err(mail_error)
    }
}

/// A job as a worker holds it: decoded once, kept while warm.
struct LoadedJob<R: KernelRegistry> {
    spec: JobSpec,
    dag: Dag<R::Op>,
    kernels: R::Kernels,
    engine: Engine,
}

/// What a worker did with one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// An executor ran this many tasks.
    Ran {
        /// Tasks it ran.
        tasks: usize,
    },
    /// The same invocation ran elsewhere (a duplicated event), or a live
    /// executor holds this start: nothing was done.
    Duplicate,
    /// The executor failed; the error went to the driver.
    Failed {
        /// The error.
        message: String,
    },
}

/// Hosts executors in a worker process or a Lambda container: one at a time,
/// with a tile cache and decoded jobs kept between invocations.
pub struct Host<R: KernelRegistry> {
    registry: R,
    connection: Connection,
    worker: u32,
    jobs: Mutex<Vec<(JobId, Arc<LoadedJob<R>>)>>,
    cache: Mutex<WorkerCache<R::Value>>,
    executors: AtomicU32,
}

impl<R: KernelRegistry> std::fmt::Debug for Host<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("connection", &self.connection)
            .field("worker", &self.worker)
            .finish()
    }
}

/// Remote executors look at their mailbox and ask for spare capacity at most
/// this often while they have work (each a round trip of 0.1 to 0.3 ms on a
/// loaded 2-core machine, where a Cholesky task in 256-tiles takes about 1 ms).
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Jobs a warm worker keeps decoded.
const WARM_JOBS: usize = 4;

impl<R: KernelRegistry> Host<R> {
    /// A host numbered `worker` (for reports) on `connection`, with the
    /// kernels of `registry`.
    pub fn new(registry: R, connection: Connection, worker: u32) -> Self {
        let nonce = (unix_ms() as u32).wrapping_mul(2_654_435_761) ^ std::process::id();
        Self {
            registry,
            connection,
            worker,
            jobs: Mutex::new(Vec::new()),
            cache: Mutex::new(WorkerCache::new()),
            executors: AtomicU32::new(nonce & 0x7fff_0000),
        }
    }

    fn job(&self, job: &JobId) -> Result<Arc<LoadedJob<R>>, RemoteError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, loaded)) = jobs.iter().find(|(id, _)| id == job) {
            return Ok(Arc::clone(loaded));
        }
        let unknown = |detail: String| RemoteError::UnknownJob {
            job: job.to_string(),
            detail,
        };
        let key = job.key("spec").map_err(|e| unknown(e.to_string()))?;
        let bytes = self
            .connection
            .block(self.connection.stores.objects.get(&key))
            .map_err(|e| unknown(e.to_string()))?;
        let spec: JobSpec = postcard::from_bytes(&bytes)
            .map_err(|e| unknown(format!("its spec does not decode: {e}")))?;
        if spec.format != FORMAT {
            return Err(unknown(format!(
                "spec format {} is not {FORMAT}",
                spec.format
            )));
        }
        let dag = Dag::<R::Op>::from_bytes(&spec.dag).map_err(|e| unknown(e.to_string()))?;
        let scheduler: Scheduler = spec.scheduler.parse().map_err(unknown)?;
        let kernels = self
            .registry
            .kernels(&spec.backend)
            .map_err(|e| unknown(e.to_string()))?;
        let mut config = EngineConfig::new(1);
        config.scheduler = scheduler;
        config.cache_bytes = spec.cache_bytes;
        config.hold_min_bytes = spec.hold_min_bytes;
        config.inline_bytes = spec.inline_bytes;
        config.poll_interval = POLL_INTERVAL;
        let loaded = Arc::new(LoadedJob {
            spec: JobSpec {
                dag: Vec::new(),
                ..spec
            },
            dag,
            kernels,
            engine: Engine::new(config),
        });
        if jobs.len() == WARM_JOBS {
            jobs.remove(0);
        }
        jobs.push((job.clone(), Arc::clone(&loaded)));
        Ok(loaded)
    }

    /// Runs one invocation: checks the payload, skips duplicates, holds the
    /// start's lease while the executor runs, and reports to the driver.
    /// Returns an error only when the payload is rejected or the job unknown
    /// (nothing ran; nothing is sent to any job's queues).
    pub fn handle(&self, payload: &[u8]) -> Result<Handled, RemoteError> {
        self.run(payload, None)
    }

    /// [`handle`](Self::handle); with `queue`, an executor that holds claims
    /// and has nothing to run takes over starts of its job from the queue
    /// instead of ending.
    fn run(
        &self,
        payload: &[u8],
        queue: Option<(&SharedListener, &str, &str)>,
    ) -> Result<Handled, RemoteError> {
        let (invocation, job) = Invocation::parse(payload)?;
        let inline = invocation.inputs()?;
        let loaded = self.job(&job)?;
        let task = TaskId(invocation.task);
        if task.index() >= loaded.dag.num_tasks() {
            return Err(RemoteError::Payload {
                reason: format!(
                    "task {task} does not exist: job {job} has {} tasks",
                    loaded.dag.num_tasks()
                ),
            });
        }
        let executor = self.executors.fetch_add(1, Ordering::Relaxed);
        let holder = Connection::holder(self.worker, invocation.attempt, executor);
        let lease = lease_name(task);
        let ttl = Duration::from_millis(loaded.spec.lease_ms);
        // Executors are counted (their reports are awaited); starts taken
        // over by a running one are not.
        let counted = self
            .connection
            .take_start(&job, task, invocation.attempt, &holder, ttl)
            .and_then(|taken| {
                if taken {
                    let counter = started_counter(&job);
                    let redis = &self.connection.broker;
                    self.connection.block(redis.add_to_counter(&counter, 1))?;
                }
                Ok(taken)
            });
        match counted {
            Ok(true) => {}
            Ok(false) => return Ok(Handled::Duplicate),
            Err(e) => {
                return Ok(self
                    .connection
                    .fail(&job, task, e.to_string(), Failure::Untyped));
            }
        }
        let started_unix_ms = unix_ms();
        let dispatcher = JobDispatcher {
            connection: &self.connection,
            job: &job,
            target: &loaded.spec.target,
            duplicate: loaded.spec.duplicate_invocations,
            start: Some(task),
            read: AtomicU32::new(0),
            waiting: queue.map(|(listener, queue, member)| Waiting {
                worker: self.worker,
                listener,
                queue,
                member,
                executor,
                lease: ttl,
                tasks: loaded.dag.num_tasks(),
                checked: Mutex::new(Instant::now()),
                marked: Mutex::new(None),
            }),
            adopted: Mutex::new(Vec::new()),
        };
        let result = {
            let _renewal = Renewal::start(&self.connection, &job, &lease, &holder, ttl);
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            loaded.engine.run_executor(
                &loaded.dag,
                &loaded.kernels,
                &self.connection.stores,
                &job,
                task,
                ExecutorSlot {
                    executor,
                    worker: self.worker,
                },
                &mut cache,
                &dispatcher,
                inline,
            )
        };
        // A function must not be frozen before the invocations it made have left.
        #[cfg(feature = "lambda")]
        if let Some(client) = &self.connection.lambda {
            client.settle(Duration::from_millis(100));
        }
        let release = dispatcher.release_adopted().and_then(|()| {
            self.connection.block(
                self.connection
                    .stores
                    .coordinator
                    .release(&job, &lease, &holder),
            )
        });
        let handled = match (result, release) {
            (Ok(report), Ok(())) => {
                let tasks = report.tasks.len();
                let message = ReportMessage {
                    started_unix_ms,
                    report,
                };
                // A lost report only thins the driver's timeline; the job is unharmed.
                if let Ok(bytes) = serde_json::to_vec(&message) {
                    let _ = self.connection.block(
                        self.connection
                            .broker
                            .push_message(&reports_queue(&job), &bytes),
                    );
                }
                Handled::Ran { tasks }
            }
            (Err(e), _) => self
                .connection
                .fail(&job, task, e.to_string(), Failure::of(&e)),
            (Ok(_), Err(e)) => self
                .connection
                .fail(&job, task, e.to_string(), Failure::Untyped),
        };
        Ok(handled)
    }

    /// Says on standard error what went wrong with an invocation.
    fn log(&self, handled: Result<Handled, RemoteError>) {
        match handled {
            Ok(Handled::Failed { message }) => {
                eprintln!("wukong worker: executor failed: {message}")
            }
            Ok(_) => {}
            Err(error) => eprintln!("wukong worker: {error}"),
        }
    }

    /// A worker process's loop: takes invocations from `queue` until
    /// `stop` is set, one executor at a time. Marks itself idle while it
    /// waits, so that executors know how many more can start at once.
    pub fn serve_queue(&self, queue: &str, stop: &AtomicBool) -> Result<(), RemoteError> {
        let redis = &self.connection.broker;
        let listener = Mutex::new(self.connection.block(redis.listener())?);
        let idle = idle_set(queue);
        let me = format!("w{}.{}", self.worker, std::process::id());
        while !stop.load(Ordering::Relaxed) {
            self.connection
                .block(redis.mark_present(&idle, &me, true))?;
            let popped = {
                let mut listener = listener.lock().unwrap_or_else(|p| p.into_inner());
                self.connection.block(listener.pop(&[queue], IDLE_WAIT))
            };
            self.connection
                .block(redis.mark_present(&idle, &me, false))?;
            let Some((_, payload)) = popped? else {
                continue;
            };
            self.log(self.run(&payload, Some((&listener, queue, &me))));
        }
        Ok(())
    }
}

/// Renews a lease from a thread of its own until dropped.
struct Renewal {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Renewal {
    fn start(
        connection: &Connection,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (connection, job, name, holder) = (
            connection.clone(),
            job.clone(),
            name.to_owned(),
            holder.to_owned(),
        );
        let every = ttl / 3;
        let thread = std::thread::Builder::new()
            .name("wukong-lease".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let coordinator = &connection.stores.coordinator;
                    match connection.block(coordinator.renew(&job, &name, &holder, ttl)) {
                        Ok(true) => {}
                        Ok(false) => eprintln!(
                            "wukong: lease {name} of job {job} was lost; the work may run twice, harmlessly"
                        ),
                        Err(e) => eprintln!("wukong: cannot renew lease {name} of job {job}: {e}"),
                    }
                }
            })
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How the driver runs jobs remotely.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Where executors start.
    pub target: Target,
    /// Lease length; an executor silent this long is presumed dead and its
    /// start invoked again.
    pub lease: Duration,
    /// Time allowed for the first executor to start.
    pub start_timeout: Duration,
    /// Time allowed for the whole job.
    pub job_timeout: Duration,
    /// Tile cache of each executor.
    pub cache_bytes: u64,
    /// Edges at least this large are held under a claim and their child
    /// delivered to the holder's mailbox, instead of written at once.
    pub hold_min_bytes: u64,
    /// Inputs of an invoked task travel with the invocation while their
    /// encodings add up to at most this many bytes (and the payload stays
    /// within [`MAX_PAYLOAD_BYTES`]); they are in the store too.
    pub inline_bytes: u64,
    /// Fault injection: send every invocation twice, as Lambda may deliver
    /// an asynchronous event more than once. Results must not change.
    pub duplicate_invocations: bool,
}

impl RemoteConfig {
    /// Worker processes on `queue`, 10 s leases.
    pub fn processes(queue: impl Into<String>) -> Self {
        Self {
            target: Target::Queue { name: queue.into() },
            lease: Duration::from_secs(10),
            start_timeout: Duration::from_secs(60),
            job_timeout: Duration::from_secs(24 * 3600),
            cache_bytes: 4 << 30,
            hold_min_bytes: EngineConfig::new(1).hold_min_bytes,
            inline_bytes: 8 << 10,
            duplicate_invocations: false,
        }
    }

    /// The Lambda function `function`, at most `concurrency` executors at once.
    pub fn lambda(function: impl Into<String>, concurrency: u32) -> Self {
        Self {
            target: Target::Lambda {
                function: function.into(),
                concurrency,
            },
            start_timeout: Duration::from_secs(300),
            ..Self::processes("unused")
        }
    }
}

/// Runs `dag` remotely: stores the spec and inputs, invokes the sources,
/// waits for the end (re-invoking the starts of executors whose lease
/// expired), reads the outputs and gathers the executors' reports. The job's
/// objects, arrivals, leases and queues are removed afterwards, also when it
/// fails.
pub fn run_job<Op, V, E>(
    submission: &Submission<'_, Op>,
    inputs: Vec<(DataId, Arc<V>)>,
) -> Result<RunOutcome<V>, ExecError<E>>
where
    Op: Operation + Serialize,
    V: StoredValue,
    E: std::error::Error + DeserializeOwned + 'static,
{
    let Submission {
        connection,
        scheduler,
        ..
    } = *submission;
    if scheduler == Scheduler::Shared {
        return Err(RemoteError::Setup {
            what: "scheduler",
            detail: "the shared scheduler needs one process; use wukong or numpywren".into(),
        }
        .into());
    }
    let job = JobId::unique("job").map_err(RemoteError::from)?;
    let result = drive(submission, inputs, &job);
    let redis = &connection.broker;
    let _ = connection.block(async {
        connection.stores.objects.delete_job(&job).await?;
        connection.stores.coordinator.clear_job(&job).await?;
        redis.delete_mailboxes(&format!("{job}.mb.")).await?;
        redis
            .delete_queues(
                &[&done_queue(&job), &reports_queue(&job)],
                &[&started_counter(&job)],
            )
            .await
    });
    result
}

/// A graph to run remotely, and how.
#[derive(Debug)]
pub struct Submission<'a, Op> {
    /// Where the job's executors and data live.
    pub connection: &'a Connection,
    /// How executors start, and the job's settings.
    pub remote: &'a RemoteConfig,
    /// How its executors schedule (Wukong or numpywren-style).
    pub scheduler: Scheduler,
    /// The name under which the hosts' [`KernelRegistry`] knows the kernels.
    pub backend: &'a str,
    /// The graph.
    pub dag: &'a Dag<Op>,
}

impl<Op> Clone for Submission<'_, Op> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Op> Copy for Submission<'_, Op> {}

fn drive<Op, V, E>(
    submission: &Submission<'_, Op>,
    inputs: Vec<(DataId, Arc<V>)>,
    job: &JobId,
) -> Result<RunOutcome<V>, ExecError<E>>
where
    Op: Operation + Serialize,
    V: StoredValue,
    E: std::error::Error + DeserializeOwned + 'static,
{
    let Submission {
        connection,
        remote,
        scheduler,
        backend,
        dag,
    } = *submission;
    // The driver's threads only stage inputs and read outputs: I/O, several at once.
    let mut config = EngineConfig::new(4);
    config.scheduler = scheduler;
    config.cache_bytes = remote.cache_bytes;
    let engine = Engine::new(config);
    let spec = JobSpec {
        format: FORMAT,
        backend: backend.into(),
        scheduler: scheduler.name().into(),
        cache_bytes: remote.cache_bytes,
        hold_min_bytes: remote.hold_min_bytes,
        inline_bytes: remote.inline_bytes,
        lease_ms: remote.lease.as_millis().max(100) as u64,
        target: remote.target.clone(),
        duplicate_invocations: remote.duplicate_invocations,
        dag: dag
            .to_bytes()
            .map_err(|e| setup("encoding the graph")(e.to_string()))?,
    };
    let spec_bytes =
        postcard::to_stdvec(&spec).map_err(|e| setup("encoding the job spec")(e.to_string()))?;
    let spec_key = job.key("spec").map_err(RemoteError::from)?;
    connection
        .block(
            connection
                .stores
                .objects
                .put(&spec_key, spec_bytes.into(), PutMode::Create),
        )
        .map_err(RemoteError::from)?;
    // Small inputs also travel with the invocations of the sources that read them.
    let mut small: HashMap<DataId, Vec<u8>> = HashMap::new();
    for (data, tile) in &inputs {
        if StoredValue::encoded_len(&**tile) <= remote.inline_bytes {
            let key = crate::data_key(job, *data).map_err(RemoteError::from)?;
            small.insert(
                *data,
                StoredValue::encode(&**tile, &key)
                    .map_err(RemoteError::from)?
                    .to_vec(),
            );
        }
    }
    let staged = engine.stage(dag, inputs, &connection.stores, job)?;
    let mut listener = connection
        .block(connection.broker.listener())
        .map_err(RemoteError::from)?;

    let start = Instant::now();
    let start_unix_ms = unix_ms();
    let dispatcher = JobDispatcher {
        connection,
        job,
        target: &remote.target,
        duplicate: remote.duplicate_invocations,
        start: None,
        read: AtomicU32::new(0),
        waiting: None,
        adopted: Mutex::new(Vec::new()),
    };
    let mut invocations = 0u64;
    for task in dag.sources() {
        let mut budget = remote.inline_bytes;
        let mut inline = Vec::new();
        for data in dag.reads(task) {
            if let Some(bytes) = small.get(data).filter(|b| b.len() as u64 <= budget) {
                budget -= bytes.len() as u64;
                inline.push((*data, bytes.clone()));
            }
        }
        dispatcher
            .invoke_with_inputs(task, 0.0, inline)
            .map_err(|source| ExecError::Invoke { task, source })?;
        invocations += 1;
    }
    if dag.num_tasks() == 0 {
        connection
            .push_outcome(job, &Outcome::Done)
            .map_err(|e| setup("redis")(e.to_string()))?;
    }
    let poll = (remote.lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
    // Starts invoked again after their lease expired: attempt sent, and when.
    let mut retried: HashMap<u32, (u32, Instant)> = HashMap::new();
    let done_queue = done_queue(job);
    loop {
        let popped = connection
            .block(listener.pop(&[&done_queue], poll))
            .map_err(RemoteError::from)?;
        if let Some((_, message)) = popped {
            match serde_json::from_slice::<Outcome>(&message) {
                Ok(Outcome::Done) => break,
                Ok(Outcome::Failed {
                    task,
                    message,
                    failure,
                }) => {
                    return Err(failure.rebuild(task, message));
                }
                Ok(Outcome::Unsent { message }) => {
                    return Err(RemoteError::Invocation { message }.into());
                }
                Err(e) => {
                    return Err(setup("a message on the job's queue")(e.to_string()).into());
                }
            }
        }
        let started = connection
            .block(connection.broker.add_to_counter(&started_counter(job), 0))
            .map_err(RemoteError::from)?;
        if started == 0 && start.elapsed() > remote.start_timeout {
            return Err(RemoteError::NoExecutors {
                seconds: remote.start_timeout.as_secs(),
            }
            .into());
        }
        if start.elapsed() > remote.job_timeout {
            return Err(RemoteError::TimedOut {
                seconds: remote.job_timeout.as_secs(),
                started,
            }
            .into());
        }
        let expired = connection.block(connection.stores.coordinator.expired(job));
        for lease in expired.map_err(RemoteError::from)? {
            let Some(task) = lease
                .name
                .strip_prefix("x/")
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let attempt = lease
                .holder
                .strip_prefix('a')
                .and_then(|h| h.split('.').next())
                .and_then(|a| a.parse::<u32>().ok())
                .unwrap_or(0);
            // A re-invocation that has not taken the lease yet gets time to start.
            if let Some(&(sent, when)) = retried.get(&task) {
                let grace = remote.lease * 3 + remote.start_timeout.min(Duration::from_secs(30));
                if sent > attempt && when.elapsed() < grace {
                    continue;
                }
            }
            let next = retried
                .get(&task)
                .map_or(attempt, |&(sent, _)| sent.max(attempt))
                + 1;
            eprintln!(
                "wukong: the executor {} of task {task} stopped renewing its lease; invoking attempt {next}",
                lease.holder
            );
            connection
                .invoke(&remote.target, &Invocation::new(job, TaskId(task), next))
                .map_err(|source| ExecError::Invoke {
                    task: TaskId(task),
                    source,
                })?;
            invocations += 1;
            retried.insert(task, (next, Instant::now()));
        }
    }
    let wall = start.elapsed();
    let outputs = engine.collect(dag, &connection.stores, job)?;
    let mut report = gather_reports(connection, job, listener.as_mut(), start_unix_ms)?;
    report.scheduler = scheduler.name().into();
    report.wall = wall;
    (report.io.staged_objects, report.io.staged_bytes) = staged;
    report.io.invocations += invocations;
    Ok(RunOutcome { outputs, report })
}

/// Collects the executors' reports: as many as executors started, waiting a
/// little for the last ones (a duplicated executor may still be winding down).
fn gather_reports(
    connection: &Connection,
    job: &JobId,
    listener: &mut dyn Listener,
    start_unix_ms: u64,
) -> Result<RunReport, RemoteError> {
    let started = connection.block(connection.broker.add_to_counter(&started_counter(job), 0))?;
    let queue = reports_queue(job);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut tasks: Vec<TaskRecord> = Vec::new();
    let mut executors: Vec<ExecutorRecord> = Vec::new();
    let mut io = IoReport::default();
    let mut workers = std::collections::HashSet::new();
    while (executors.len() as i64) < started && Instant::now() < deadline {
        let Some((_, bytes)) =
            connection.block(listener.pop(&[&queue], Duration::from_millis(200)))?
        else {
            continue;
        };
        let Ok(message) = serde_json::from_slice::<ReportMessage>(&bytes) else {
            continue;
        };
        let offset = Duration::from_millis(message.started_unix_ms.saturating_sub(start_unix_ms));
        let mut record = message.report.executor;
        record.start += offset;
        record.end += offset;
        workers.insert(record.thread);
        executors.push(record);
        tasks.extend(message.report.tasks.into_iter().map(|mut t| {
            t.start += offset;
            t.end += offset;
            t
        }));
        io += &message.report.io;
    }
    tasks.sort_by_key(|r| r.end);
    executors.sort_by_key(|r| r.start);
    Ok(RunReport {
        scheduler: String::new(),
        wall: Duration::ZERO,
        threads: workers.len(),
        executors: executors.len(),
        tasks,
        executor_records: executors,
        io,
        cost: None,
    })
}

/// Worker hosts on threads of this process, each taking invocations from a
/// queue as a worker process does (one executor at a time, its own tile
/// cache); stopped when dropped, within a second. Over
/// [`Connection::in_memory`] they run remote jobs with no server at all.
#[derive(Debug)]
pub struct WorkerThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Result<(), RemoteError>>>,
}

impl WorkerThreads {
    /// Starts `count` hosts with the kernels of `registry` on `connection`,
    /// taking invocations from `queue`.
    pub fn spawn<R: KernelRegistry + Clone>(
        registry: &R,
        connection: &Connection,
        count: usize,
        queue: &str,
    ) -> Result<Self, RemoteError> {
        let mut workers = Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(count),
        };
        for index in 0..count {
            let host = Host::new(registry.clone(), connection.clone(), index as u32);
            let (stop, queue) = (Arc::clone(&workers.stop), queue.to_owned());
            let thread = std::thread::Builder::new()
                .name(format!("wukong-worker-{index}"))
                .spawn(move || host.serve_queue(&queue, &stop))
                .map_err(|e| setup("starting a worker thread")(e.to_string()))?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Stops the hosts after their current invocation and returns the first
    /// error one of them ended with.
    pub fn stop(mut self) -> Result<(), RemoteError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), RemoteError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for thread in self.threads.drain(..) {
            let ended = thread
                .join()
                .unwrap_or_else(|_| Err(setup("a worker thread")("it panicked".into())));
            if result.is_ok() {
                result = ended;
            }
        }
        result
    }
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        if let Err(error) = self.join() {
            eprintln!("wukong: a worker thread ended with an error: {error}");
        }
    }
}

/// Worker processes started by this process, stopped (killed) when dropped.
#[derive(Debug)]
pub struct WorkerProcesses {
    children: Vec<std::process::Child>,
}

impl WorkerProcesses {
    /// Starts `count` `wukong worker` processes of the executable `exe`
    /// against `redis_url`, taking invocations from `queue`, each running
    /// kernels on one thread, with `env` added to their environment.
    pub fn spawn(
        exe: &Path,
        count: usize,
        redis_url: &str,
        objects: &ObjectTarget,
        queue: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, RemoteError> {
        let mut workers = Self {
            children: Vec::with_capacity(count),
        };
        for index in 0..count {
            let mut command = std::process::Command::new(exe);
            command
                .arg("worker")
                // Not an argument: other users can read a process's arguments.
                .env("WUKONG_REDIS_URL", redis_url)
                .arg("--queue")
                .arg(queue)
                .arg("--index")
                .arg(index.to_string())
                .env("OPENBLAS_NUM_THREADS", "1")
                .env("RAYON_NUM_THREADS", "1")
                .envs(env.iter().copied())
                .stdin(std::process::Stdio::null());
            if let Some(bucket) = &objects.s3_bucket {
                command.arg("--bucket").arg(bucket);
            }
            if let Some(endpoint) = &objects.s3_endpoint {
                command.arg("--s3-endpoint").arg(endpoint);
            }
            let child = command.spawn().map_err(|e| {
                setup("starting a worker process")(format!("{}: {e}", exe.display()))
            })?;
            workers.children.push(child);
        }
        Ok(workers)
    }

    /// The process ids, in start order.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(std::process::Child::id).collect()
    }

    /// Kills worker `index` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, index: usize) -> std::io::Result<()> {
        let Some(child) = self.children.get_mut(index) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("there is no worker {index}"),
            ));
        };
        child.kill()?;
        child.wait().map(|_| ())
    }
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
