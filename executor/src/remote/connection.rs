//! A deployment's broker, stores and async runtime, and how executors are
//! invoked through them.

#[cfg(feature = "redis")]
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wukong_dag::TaskId;
use wukong_storage::{
    Broker, Clock, Coordinator, JobId, Listener, MemoryStore, ObjectStore, StorageError,
    SystemClock,
};

use super::RemoteError;
use super::host::Handled;
use super::protocol::{
    Failure, IDLE_WAIT, Invocation, Outcome, StartLease, Target, done_queue, idle_set,
};
use crate::{InvokeError, Stores};

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

pub(super) fn setup(what: &'static str) -> impl Fn(String) -> RemoteError {
    move |detail| RemoteError::Setup { what, detail }
}

/// A worker host's listener, shared by the executors it runs.
pub(super) type SharedListener = Mutex<Box<dyn Listener>>;

/// Shared state of a remote deployment: the broker, the coordinator and the
/// object store (Redis, optionally S3 for objects; or one in-memory store),
/// and the async runtime that drives them.
#[derive(Clone)]
pub struct Connection {
    pub(super) broker: Arc<dyn Broker>,
    endpoint: String,
    pub(super) stores: Stores,
    runtime: tokio::runtime::Handle,
    _io: Option<Arc<tokio::runtime::Runtime>>,
    /// What waits, polls, leases and the driver's timeouts measure time by.
    pub(super) clock: Arc<dyn Clock>,
    #[cfg(feature = "lambda")]
    pub(super) lambda: Option<crate::lambda::LambdaClient>,
}

/// The async runtime behind network stores: one thread, named `wukong-io`.
fn io_runtime() -> Result<tokio::runtime::Runtime, RemoteError> {
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

    /// The same connection measuring time by `clock` (a virtual one in a
    /// simulation; the system's by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
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
            clock: Arc::new(SystemClock),
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
            clock: Arc::new(SystemClock),
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

    pub(super) fn block<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        self.runtime.block_on(future)
    }

    /// Takes the claim of an invocation and the lease of its start for
    /// `holder`; `false` if another executor has either (a duplicate).
    pub(super) fn take_start(
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
        if !self.block(coordinator.acquire(job, &StartLease(task).to_string(), holder, ttl))? {
            return Ok(false);
        }
        Ok(true)
    }

    /// Tells the driver that the executor of `job` at `task` failed.
    pub(super) fn fail(
        &self,
        job: &JobId,
        task: TaskId,
        message: String,
        failure: Failure,
    ) -> Handled {
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

    pub(super) fn push_outcome(&self, job: &JobId, outcome: &Outcome) -> Result<(), InvokeError> {
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

    pub(super) fn invoke(
        &self,
        target: &Target,
        invocation: &Invocation,
    ) -> Result<(), InvokeError> {
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
                        queue: done_queue(&invocation.job),
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

    pub(super) fn spare_capacity(&self, target: &Target) -> usize {
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
