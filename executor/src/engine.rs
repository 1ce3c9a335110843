//! The store-backed executors: the Wukong scheduler and the numpywren-style
//! baseline, on the same stores, the same graph and the same code paths.
//!
//! **Wukong** (decentralized). An executor runs tasks from its own ready
//! queue with inputs from its local cache, else from the store. After a task:
//! - each output that is a final result is written to the store; other outputs
//!   stay in the cache (delayed I/O);
//! - a child with one parent is ready at once; for a child with several, the
//!   executor records its edge with an idempotent arrival. Before arriving it
//!   either *claims* the child (then its data stays here and the child will be
//!   delivered to this executor) or, if another executor holds the claim, writes
//!   its data to the store (write before arrive). The arrival that completes
//!   the child tells its executor at once; the child goes to the claim holder
//!   if that one still runs, else it runs here;
//! - ready children join the local queue (the executor *becomes* them one after
//!   the other, highest priority first); while the platform has spare capacity,
//!   free children (see [`ClusterPlan`]) with the least local data are handed to
//!   new executors, their inputs written first.
//!
//! Before an executor ends, it writes what it held for children that have not
//! run, then closes its mailbox; a child delivered in between still runs here.
//! The cache belongs to the worker (a thread here): the next executor started
//! on the same worker finds the tiles of the previous ones. So in local mode
//! an executor that holds claims and has nothing queued does not end while a
//! task runs on another thread: it takes over starts queued for a worker (its
//! thread would run them next, with the same cache) and runs what is
//! delivered to it, and writes what it held only when no task runs anywhere.
//! Cholesky 8192 in 256-tiles on 2 threads: store writes 692 → 277 MB (the
//! result alone), reads 614 → 540 MB. Remote executors end at once.
//!
//! **numpywren-style** (central). Every task is its own executor taken from
//! the central queue: it reads every input from the store, writes every output
//! to it, records an arrival on every edge, and queues the children that
//! became ready.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use wukong_dag::{ClusterParams, ClusterPlan, Dag, DataId, Operation, TaskId};
use wukong_storage::{
    Arrival, Coordinator, Edge, Hold, JobId, Join, Joined, ObjectKey, ObjectStore, ObjectStoreExt,
    PutMode, SharedValue, StorageError, StoredValue,
};

/// The pseudo-task whose "arrivals" count finished tasks in remote modes: the
/// arrival that completes it tells its executor that the job is done.
const DONE_NODE: u64 = 1 << 32;

use crate::cache::TileCache;
use crate::platform::{
    Delivered, Delivery, ExecutorId, Holder, Idle, InlineInputs, InvokeError, Mailbox, Platform,
};
use crate::pool::ThreadPool;
use crate::{
    ExecError, ExecutorRecord, IoReport, Kernels, Progress, RunOptions, RunOutcome, RunReport,
    TaskRecord,
};

/// Which scheduler runs the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Decentralized: become, clustering, delayed I/O, local caches.
    Wukong,
    /// Central queue; every input read from and every output written to the store.
    Numpywren,
    /// No store: threads of this process share every value in memory
    /// ([`LocalExecutor`](crate::LocalExecutor)); the in-process upper bound.
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

/// Runs graphs through a store with the Wukong or the numpywren-style
/// scheduler, on threads of this process.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
}

impl Engine {
    /// An engine with `config`.
    pub fn new(config: EngineConfig) -> Self {
        Self { config }
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Runs `dag` with `kernels` from values for every input, through `stores`,
    /// and returns the graph's outputs read back from the store.
    ///
    /// The first failure stops the run: executors stop at their next task,
    /// and the error is returned. The job's objects, arrivals and claims are
    /// removed afterwards unless [`EngineConfig::keep_objects`] is set.
    pub fn run<Op, K>(
        &self,
        dag: &Dag<Op>,
        kernels: &K,
        inputs: impl IntoIterator<Item = (DataId, Arc<K::Value>)>,
        stores: &Stores,
        options: &RunOptions<'_>,
    ) -> Result<RunOutcome<K::Value>, ExecError<K::Error>>
    where
        Op: Operation + Sync,
        K: Kernels<Op>,
        K::Value: StoredValue,
    {
        if self.config.threads == 0 {
            return Err(ExecError::NoThreads);
        }
        if self.config.scheduler == Scheduler::Shared {
            return crate::LocalExecutor::new(self.config.threads)
                .run(dag, kernels, inputs, options);
        }
        let job = JobId::unique("run").map_err(|source| ExecError::Store { task: None, source })?;
        let plan = (self.config.scheduler == Scheduler::Wukong)
            .then(|| ClusterPlan::new(dag, self.config.cluster));
        let holdable = plan.as_ref().map_or_else(Vec::new, |plan| {
            holdable_children(dag, plan, self.config.hold_min_bytes)
        });
        let pool = ThreadPool::new(self.config.threads);
        let mut run = Run::new(dag, kernels, &self.config, stores, job, &pool);
        run.plan = plan;
        run.holdable = holdable;
        run.progress = options.progress;
        let result = run.execute(&pool, inputs);
        if !self.config.keep_objects {
            // Best effort: a failed clean-up must not hide the run's result.
            let _ = block_on(stores.runtime.as_ref(), async {
                stores.objects.delete_job(&run.job).await?;
                stores.coordinator.clear_job(&run.job).await
            });
        }
        result
    }
}

impl Engine {
    /// Remote modes, driver side: checks `inputs` and puts them into the store
    /// under `job`; returns the objects and bytes written.
    pub(crate) fn stage<Op, V, E>(
        &self,
        dag: &Dag<Op>,
        inputs: impl IntoIterator<Item = (DataId, Arc<V>)>,
        stores: &Stores,
        job: &JobId,
    ) -> Result<(u64, u64), ExecError<E>>
    where
        Op: Operation,
        V: StoredValue,
        E: std::error::Error + 'static,
    {
        let staged = crate::local::checked_inputs(dag, inputs)?;
        stage_inputs(staged, stores, job, self.config.threads)
            .map_err(|source| ExecError::Store { task: None, source })
    }

    /// Remote modes, driver side: reads the graph's outputs back from the store.
    pub(crate) fn collect<Op, V, E>(
        &self,
        dag: &Dag<Op>,
        stores: &Stores,
        job: &JobId,
    ) -> Result<HashMap<DataId, Arc<V>>, ExecError<E>>
    where
        V: StoredValue,
        E: std::error::Error + 'static,
    {
        read_outputs(dag, stores, job, self.config.threads)
    }

    /// Remote modes, executor side: runs one executor that starts at `start`
    /// on this thread, with the Wukong or the numpywren-style rules, until it
    /// has nothing left to do. New executors start through `dispatcher`, which
    /// also hears when the job's last task has finished. `cache` is the
    /// worker's tile cache; it is emptied when the job changes. `inline`
    /// holds encoded inputs that came with the invocation (checked like any
    /// stored tile); they go to the cache.
    ///
    /// If the dispatcher opens a mailbox, the executor holds fan-in data
    /// under claims in the dispatcher's name and takes deliveries there, as
    /// in local mode; otherwise every fan-in edge is written before its
    /// arrival and the completing executor runs the child.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_executor<Op, K>(
        &self,
        dag: &Dag<Op>,
        kernels: &K,
        stores: &Stores,
        job: &JobId,
        start: TaskId,
        id: ExecutorSlot,
        cache: &mut WorkerCache<K::Value>,
        platform: &dyn Platform,
        inline: InlineInputs,
    ) -> Result<ExecutorReport, ExecError<K::Error>>
    where
        Op: Operation + Sync,
        K: Kernels<Op>,
        K::Value: StoredValue,
    {
        if start.index() >= dag.num_tasks() {
            return Err(ExecError::NoSuchTask {
                task: start,
                tasks: dag.num_tasks(),
            });
        }
        let plan = (self.config.scheduler != Scheduler::Numpywren)
            .then(|| ClusterPlan::new(dag, self.config.cluster));
        let mut run = Run::new(dag, kernels, &self.config, stores, job.clone(), platform);
        let invoke_error = |source| ExecError::Invoke {
            task: Some(start),
            source,
        };
        let mailbox = match &plan {
            Some(_) => platform
                .open_mailbox(ExecutorId(id.executor))
                .map_err(invoke_error)?,
            None => None,
        };
        run.holdable = match (&plan, &mailbox) {
            (Some(plan), Some(_)) => holdable_children(dag, plan, self.config.hold_min_bytes),
            // Nobody takes deliveries: nothing is held under a claim.
            (Some(_), None) => vec![false; dag.num_tasks()],
            (None, _) => Vec::new(),
        };
        run.plan = plan;
        run.remote = true;
        run.next_executor = AtomicU32::new(id.executor);
        if cache.job.as_ref() != Some(job) {
            cache.cache = TileCache::new(self.config.cache_bytes);
            cache.job = Some(job.clone());
        }
        let mut executor = Executor {
            id: ExecutorId(id.executor),
            thread: id.worker,
            cache: std::mem::replace(&mut cache.cache, TileCache::new(0)),
            pinned: BinaryHeap::new(),
            free: BinaryHeap::new(),
            held: HashSet::new(),
            deferred: Vec::new(),
            mailbox,
            records: Vec::new(),
            mail_read: None,
            capacity_asked: None,
        };
        run.push(&mut executor, start, false, None);
        let result = run
            .preload(&mut executor, start, inline)
            .and_then(|()| run.executor_loop(&mut executor));
        cache.cache = executor.cache;
        result?;
        let end = run.elapsed();
        Ok(ExecutorReport {
            executor: ExecutorRecord {
                executor: id.executor,
                thread: id.worker,
                first_task: start,
                start: std::time::Duration::ZERO,
                end,
                tasks: executor.records.len(),
            },
            tasks: executor.records,
            io: run.io.report(),
        })
    }
}

/// Who runs a remote executor: its number and its worker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorSlot {
    /// The executor, unique within the job as far as reports go.
    pub executor: u32,
    /// The worker process or function instance hosting it.
    pub worker: u32,
}

/// A worker's tile cache, kept between the executors it hosts: tiles are
/// single-assignment, so a cached tile of the same job is never stale.
pub struct WorkerCache<V> {
    job: Option<JobId>,
    cache: TileCache<V>,
}

impl<V> WorkerCache<V> {
    /// An empty cache; its budget is set by the engine's configuration.
    pub fn new() -> Self {
        Self {
            job: None,
            cache: TileCache::new(0),
        }
    }
}

impl<V> Default for WorkerCache<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// What one remote executor did, sent back to the driver. Times count from
/// the executor's own start.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExecutorReport {
    /// The executor's life.
    pub executor: ExecutorRecord,
    /// Its tasks.
    pub tasks: Vec<TaskRecord>,
    /// Its traffic.
    pub io: IoReport,
}

/// Runs `work` on every item of `items`, split over `threads` threads
/// (interleaved, so that each thread gets a similar share), and returns the
/// results in the order of `items`; the first error wins.
fn in_parallel<T: Sync, R: Send, E: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(&work).collect();
    }
    let work = &work;
    let parts: Vec<Result<Vec<(usize, R)>, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|first| {
                scope.spawn(move || {
                    (first..items.len())
                        .step_by(threads)
                        .map(|i| work(&items[i]).map(|r| (i, r)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut results = Vec::with_capacity(items.len());
    for part in parts {
        results.extend(part?);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// Puts the inputs (the in-memory store keeps them as they are, the others
/// get their bytes), on `threads` threads at once; returns the objects and
/// bytes written.
fn stage_inputs<V: StoredValue>(
    inputs: Vec<(DataId, Arc<V>)>,
    stores: &Stores,
    job: &JobId,
    threads: usize,
) -> Result<(u64, u64), StorageError> {
    let sizes = in_parallel(&inputs, threads, |(data, value)| {
        let key = data_key(job, *data)?;
        let size = value.encoded_len();
        // The in-memory store keeps the input tile itself; others get its bytes.
        block_on(
            stores.runtime.as_ref(),
            stores.objects.put_value(
                &key,
                Arc::clone(value) as Arc<dyn SharedValue>,
                PutMode::Create,
            ),
        )?;
        Ok::<u64, StorageError>(size)
    })?;
    Ok((inputs.len() as u64, sizes.iter().sum()))
}

/// Gets the graph's outputs (shared from the in-memory store, decoded from
/// the others), on `threads` threads at once.
fn read_outputs<Op, V: StoredValue, E: std::error::Error + 'static>(
    dag: &Dag<Op>,
    stores: &Stores,
    job: &JobId,
    threads: usize,
) -> Result<HashMap<DataId, Arc<V>>, ExecError<E>> {
    let outputs: Vec<(DataId, Option<TaskId>)> = dag
        .outputs()
        .iter()
        .map(|&data| (data, dag.producer(data)))
        .collect();
    let values = in_parallel(&outputs, threads, |&(data, task)| {
        let read = || -> Result<Arc<V>, StorageError> {
            let key = data_key(job, data)?;
            block_on(stores.runtime.as_ref(), stores.objects.get_value::<V>(&key))
                .map(|(value, _)| value)
        };
        read()
            .map(|value| (data, value))
            .map_err(|source| (task, source))
    })
    .map_err(|(task, source)| ExecError::Store { task, source })?;
    Ok(values.into_iter().collect())
}

/// Where a data item of `job` lives in the object store.
pub fn data_key(job: &JobId, data: DataId) -> Result<ObjectKey, StorageError> {
    job.key(format!("d{}", data.0))
}

/// Per task: whether some parent edge is large enough to be held under a
/// claim (Wukong only; the plan has each edge's declared bytes).
fn holdable_children<Op>(dag: &Dag<Op>, plan: &ClusterPlan, hold_min_bytes: u64) -> Vec<bool> {
    let mut holdable = vec![false; dag.num_tasks()];
    for parent in (0..dag.num_tasks() as u32).map(TaskId) {
        for (&child, &bytes) in dag.children(parent).iter().zip(plan.edge_bytes(parent)) {
            if bytes >= hold_min_bytes && dag.fan_in(child) > 1 {
                holdable[child.index()] = true;
            }
        }
    }
    holdable
}

/// Runs a store future to completion: at once if it is ready on the first
/// poll (the in-memory store), else on `runtime`, or on a private runtime
/// when none was given.
fn block_on<T, F>(runtime: Option<&tokio::runtime::Handle>, future: F) -> Result<T, StorageError>
where
    F: Future<Output = Result<T, StorageError>>,
{
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(std::task::Waker::noop());
    // Inside the runtime's context, so that timers and sockets the future
    // creates on its first poll belong to it.
    let first = {
        let _context = runtime.map(tokio::runtime::Handle::enter);
        future.as_mut().poll(&mut context)
    };
    if let Poll::Ready(output) = first {
        return output;
    }
    match runtime {
        Some(handle) => handle.block_on(future),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::InvalidConfig {
                what: "async runtime for the store",
                detail: e.to_string(),
            })?
            .block_on(future),
    }
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_hit_bytes: AtomicU64,
    store_reads: AtomicU64,
    store_read_bytes: AtomicU64,
    store_writes: AtomicU64,
    store_write_bytes: AtomicU64,
    staged_bytes: AtomicU64,
    staged_objects: AtomicU64,
    inline_inputs: AtomicU64,
    arrivals: AtomicU64,
    claims: AtomicU64,
    invocations: AtomicU64,
    deliveries: AtomicU64,
    adoptions: AtomicU64,
}

fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

impl Counters {
    fn report(&self) -> IoReport {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IoReport {
            cache_hits: load(&self.cache_hits),
            cache_hit_bytes: load(&self.cache_hit_bytes),
            store_reads: load(&self.store_reads),
            store_read_bytes: load(&self.store_read_bytes),
            store_writes: load(&self.store_writes),
            store_write_bytes: load(&self.store_write_bytes),
            staged_bytes: load(&self.staged_bytes),
            staged_objects: load(&self.staged_objects),
            inline_inputs: load(&self.inline_inputs),
            arrivals: load(&self.arrivals),
            claims: load(&self.claims),
            invocations: load(&self.invocations),
            deliveries: load(&self.deliveries),
            adoptions: load(&self.adoptions),
        }
    }
}

struct Run<'a, Op, K: Kernels<Op>> {
    dag: &'a Dag<Op>,
    kernels: &'a K,
    plan: Option<ClusterPlan>,
    /// Per task: whether some parent may hold its data under a claim (an
    /// edge declares at least `hold_min_bytes`); if not, nobody claims it.
    /// Empty unless the scheduler is Wukong.
    holdable: Vec<bool>,
    config: &'a EngineConfig,
    stores: &'a Stores,
    job: JobId,
    platform: &'a dyn Platform,
    /// Executors in other processes: the job's end is counted in the coordinator.
    remote: bool,
    done: Vec<AtomicBool>,
    done_count: AtomicUsize,
    failure: Mutex<Option<ExecError<K::Error>>>,
    stopped: AtomicBool,
    next_executor: AtomicU32,
    io: Counters,
    /// When the run started, on the platform's clock.
    start: Duration,
    progress: Option<&'a (dyn Fn(Progress) + Sync)>,
    /// Local Wukong runs: inputs that only one source task reads, handed to
    /// the executor that starts there instead of going through the store.
    handoff: Mutex<Handoff<K::Value>>,
}

/// Inputs handed to the executor that starts at each task.
type Handoff<V> = HashMap<TaskId, Vec<(DataId, Arc<V>)>>;

/// A task in an executor's own ready queue.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Local {
    priority: u64,
    task: std::cmp::Reverse<TaskId>,
    /// The start taken over whose work this is (see [`Platform::holder`]);
    /// `None`: the executor's own.
    origin: Option<TaskId>,
}

impl<V> Executor<V> {
    /// The highest-priority ready task, pinned or free.
    fn pop(&mut self) -> Option<Local> {
        match (self.pinned.peek(), self.free.peek()) {
            (Some(p), Some(f)) if f > p => self.free.pop(),
            (Some(_), _) => self.pinned.pop(),
            (None, _) => self.free.pop(),
        }
    }
}

/// One executor's state.
struct Executor<V> {
    id: ExecutorId,
    thread: u32,
    cache: TileCache<V>,
    /// Ready tasks that the clustering plan or a held claim keeps here.
    pinned: BinaryHeap<Local>,
    /// Ready tasks that may be handed to another executor.
    free: BinaryHeap<Local>,
    /// Children whose claim this executor holds and that have not run here.
    held: HashSet<TaskId>,
    /// Delivered tasks whose held data this executor has not produced yet
    /// (it re-runs the work of a lost executor that claimed them).
    deferred: Vec<Delivery>,
    mailbox: Option<Arc<Mailbox>>,
    records: Vec<TaskRecord>,
    /// When the mailbox was last read, and spare capacity last asked for.
    mail_read: Option<Duration>,
    capacity_asked: Option<Duration>,
}

type Outcome<V, E> = Result<RunOutcome<V>, ExecError<E>>;

impl<'a, Op, K> Run<'a, Op, K>
where
    Op: Operation + Sync,
    K: Kernels<Op>,
    K::Value: StoredValue,
{
    /// A run with no clustering plan (numpywren-style) in local mode.
    fn new(
        dag: &'a Dag<Op>,
        kernels: &'a K,
        config: &'a EngineConfig,
        stores: &'a Stores,
        job: JobId,
        platform: &'a dyn Platform,
    ) -> Self {
        Self {
            dag,
            kernels,
            plan: None,
            holdable: Vec::new(),
            config,
            stores,
            job,
            platform,
            remote: false,
            done: (0..dag.num_tasks())
                .map(|_| AtomicBool::new(false))
                .collect(),
            done_count: AtomicUsize::new(0),
            failure: Mutex::new(None),
            stopped: AtomicBool::new(false),
            next_executor: AtomicU32::new(0),
            io: Counters::default(),
            start: platform.clock().now(),
            progress: None,
            handoff: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a poll last made at `last` may be made again (see
    /// [`EngineConfig::poll_interval`]); if so, it counts as made now.
    fn due(&self, last: &mut Option<Duration>) -> bool {
        let interval = self.config.poll_interval;
        if interval.is_zero() {
            return true;
        }
        let now = self.platform.clock().now();
        if last.is_some_and(|t| now.saturating_sub(t) < interval) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The time since the run started.
    fn elapsed(&self) -> Duration {
        self.platform.clock().since(self.start)
    }

    fn wukong(&self) -> bool {
        self.plan.is_some()
    }

    fn key(&self, data: DataId) -> Result<ObjectKey, StorageError> {
        data_key(&self.job, data)
    }

    fn block<T>(
        &self,
        future: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        block_on(self.stores.runtime.as_ref(), future)
    }

    fn execute(
        &self,
        pool: &ThreadPool,
        inputs: impl IntoIterator<Item = (DataId, Arc<K::Value>)>,
    ) -> Outcome<K::Value, K::Error> {
        let dag = self.dag;
        let mut staged = crate::local::checked_inputs(dag, inputs)?;
        if self.wukong() && !self.remote {
            // Delayed I/O for inputs: one that a single source task reads
            // (and that is not a result) goes straight to the executor that
            // starts there; it reaches the store only if that executor evicts it.
            let mut handoff = self.handoff.lock();
            staged.retain(|(data, value)| match dag.consumers(*data) {
                &[task] if dag.fan_in(task) == 0 && !dag.is_output(*data) => {
                    handoff
                        .entry(task)
                        .or_default()
                        .push((*data, Arc::clone(value)));
                    false
                }
                _ => true,
            });
        }
        let (objects, bytes) = stage_inputs(staged, self.stores, &self.job, self.config.threads)
            .map_err(|source| ExecError::Store { task: None, source })?;
        add(&self.io.staged_bytes, bytes);
        add(&self.io.staged_objects, objects);

        let start = self.elapsed();
        for task in dag.sources() {
            self.invoke(task)?;
        }
        if dag.num_tasks() == 0 {
            pool.stop();
        }
        let lives: Vec<(Vec<TaskRecord>, Vec<ExecutorRecord>)> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..self.config.threads as u32)
                .map(|thread| {
                    std::thread::Builder::new()
                        .name(format!("wukong-worker-{thread}"))
                        .spawn_scoped(scope, move || self.host(pool, thread))
                })
                .collect();
            let mut lives = Vec::with_capacity(threads.len());
            for thread in threads {
                match thread {
                    Ok(thread) => lives.push(thread.join().unwrap_or_default()),
                    // Fewer threads than configured could stall the pool: stop.
                    Err(error) => self.fail(
                        pool,
                        ExecError::Invoke {
                            task: None,
                            source: InvokeError {
                                platform: "threads",
                                detail: format!("cannot start a worker thread: {error}"),
                            },
                        },
                    ),
                }
            }
            lives
        });
        let wall = self.elapsed() - start;
        if let Some(failure) = self.failure.lock().take() {
            return Err(failure);
        }
        let done = self.done_count.load(Ordering::Acquire);
        if done < dag.num_tasks() || pool.stalled() {
            return Err(ExecError::Stalled {
                done,
                total: dag.num_tasks(),
            });
        }
        let (mut tasks, mut executors): (Vec<_>, Vec<_>) = lives.into_iter().unzip();
        let mut tasks: Vec<TaskRecord> = tasks.drain(..).flatten().collect();
        let mut executor_records: Vec<ExecutorRecord> = executors.drain(..).flatten().collect();
        tasks.sort_by_key(|r| r.end);
        executor_records.sort_by_key(|r| r.executor);

        let outputs = read_outputs(dag, self.stores, &self.job, self.config.threads)?;
        Ok(RunOutcome {
            outputs,
            report: RunReport {
                scheduler: self.config.scheduler.name().into(),
                wall,
                threads: self.config.threads,
                executors: executor_records.len(),
                tasks,
                executor_records,
                io: self.io.report(),
                cost: None,
            },
        })
    }

    /// A pool thread: runs executors until the run is over. Its tile cache
    /// outlives each executor, as a warm worker's memory does: tiles are
    /// single-assignment, so a cached tile is never stale.
    fn host(&self, pool: &ThreadPool, thread: u32) -> (Vec<TaskRecord>, Vec<ExecutorRecord>) {
        let mut tasks = Vec::new();
        let mut executors = Vec::new();
        let mut cache = Some(TileCache::new(self.config.cache_bytes));
        while let Some(first) = pool.next() {
            if self.stopped.load(Ordering::Relaxed) {
                break;
            }
            let id = ExecutorId(self.next_executor.fetch_add(1, Ordering::Relaxed));
            let start = self.elapsed();
            let mut executor = Executor {
                id,
                thread,
                cache: cache
                    .take()
                    .unwrap_or_else(|| TileCache::new(self.config.cache_bytes)),
                pinned: BinaryHeap::new(),
                free: BinaryHeap::new(),
                held: HashSet::new(),
                deferred: Vec::new(),
                mailbox: if self.wukong() {
                    // The thread pool's mailboxes cannot fail to open.
                    self.platform.open_mailbox(id).ok().flatten()
                } else {
                    None
                },
                records: Vec::new(),
                mail_read: None,
                capacity_asked: None,
            };
            self.start_at(&mut executor, first, None);
            if let Err(failure) = self.executor_loop(&mut executor) {
                self.fail(pool, failure);
            }
            if executor.mailbox.is_some() {
                let _ = self.platform.close_mailbox(id);
            }
            executors.push(ExecutorRecord {
                executor: id.0,
                thread,
                first_task: first,
                start,
                end: self.elapsed(),
                tasks: executor.records.len(),
            });
            tasks.append(&mut executor.records);
            cache = Some(executor.cache);
        }
        (tasks, executors)
    }

    /// Queues the task an invocation starts at, with the inputs handed to it.
    /// Queues the start `task`; `origin` is `Some(task)` for a start taken
    /// over on a remote platform, which stays with this executor: its start
    /// claim is taken, so nobody else would run it.
    fn start_at(&self, executor: &mut Executor<K::Value>, task: TaskId, origin: Option<TaskId>) {
        // Kept for a duplicated invocation of the same task.
        let handed = self.handoff.lock().get(&task).cloned().unwrap_or_default();
        for (data, value) in handed {
            let size = value.memory_bytes();
            // Not durable: written to the store if it is ever evicted.
            executor.cache.insert(data, value, size, false);
            add(&self.io.inline_inputs, 1);
        }
        self.push(executor, task, origin.is_some(), origin);
    }

    fn fail(&self, pool: &ThreadPool, failure: ExecError<K::Error>) {
        self.failure.lock().get_or_insert(failure);
        self.stopped.store(true, Ordering::Relaxed);
        pool.stop();
    }

    fn push(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        pinned: bool,
        origin: Option<TaskId>,
    ) {
        let local = Local {
            priority: self.dag.priority(task).max(0.0).to_bits(),
            task: std::cmp::Reverse(task),
            origin,
        };
        if pinned {
            executor.pinned.push(local);
        } else {
            executor.free.push(local);
        }
    }

    fn invoke(&self, task: TaskId) -> Result<(), ExecError<K::Error>> {
        self.invoke_with(task, Vec::new())
    }

    /// Puts inputs that came with the invocation into the cache.
    fn preload(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        inline: InlineInputs,
    ) -> Result<(), ExecError<K::Error>> {
        for (data, bytes) in inline {
            if data.index() >= self.dag.num_data() {
                return Err(ExecError::NotAnInput { data });
            }
            let key = self.key(data).map_err(|source| ExecError::Store {
                task: Some(task),
                source,
            })?;
            let value = K::Value::decode(&key, &bytes).map_err(|source| ExecError::Store {
                task: Some(task),
                source,
            })?;
            let size = value.memory_bytes();
            executor.cache.insert(data, Arc::new(value), size, true);
            add(&self.io.inline_inputs, 1);
        }
        Ok(())
    }

    /// Starts an executor at `task`, offering `inputs` inline.
    fn invoke_with(&self, task: TaskId, inputs: InlineInputs) -> Result<(), ExecError<K::Error>> {
        let copies = if self.config.duplicate_invocations {
            2
        } else {
            1
        };
        for _ in 0..copies {
            add(&self.io.invocations, 1);
            let priority = self.dag.priority(task);
            let result = self.platform.invoke(task, priority, inputs.clone());
            result.map_err(|source| ExecError::Invoke {
                task: Some(task),
                source,
            })?;
        }
        Ok(())
    }

    /// The encoded inputs of `task` that this executor holds and that fit
    /// together in [`EngineConfig::inline_bytes`].
    fn inline_inputs(
        &self,
        executor: &Executor<K::Value>,
        task: TaskId,
    ) -> Result<InlineInputs, ExecError<K::Error>> {
        let mut budget = self.config.inline_bytes;
        let mut inline = Vec::new();
        if budget == 0 {
            return Ok(inline);
        }
        for &data in self.dag.reads(task) {
            let Some(entry) = executor.cache.entry(data) else {
                continue;
            };
            let len = entry.value.encoded_len();
            if len > budget {
                continue;
            }
            let key = self.key(data).map_err(|source| ExecError::Store {
                task: Some(task),
                source,
            })?;
            let bytes = entry
                .value
                .encode(&key)
                .map_err(|source| ExecError::Store {
                    task: Some(task),
                    source,
                })?;
            budget -= len;
            inline.push((data, bytes.to_vec()));
        }
        Ok(inline)
    }

    fn executor_loop(&self, executor: &mut Executor<K::Value>) -> Result<(), ExecError<K::Error>> {
        let mail_error = |source| ExecError::Invoke { task: None, source };
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return Ok(());
            }
            if let Some(mailbox) = &executor.mailbox {
                // Deliveries are for children held here; while nothing is
                // held, they can wait in the platform's mailbox (read in full
                // when it closes).
                let idle = executor.pinned.is_empty() && executor.free.is_empty();
                if !executor.held.is_empty() && (idle || self.due(&mut executor.mail_read)) {
                    self.platform.collect_mail(mailbox).map_err(mail_error)?;
                }
                let delivered = mailbox.take();
                self.accept(executor, delivered);
            }
            let Some(next) = executor.pop() else {
                if executor.mailbox.is_none() {
                    // Deliveries whose held data never came back: run them
                    // from the store, where a missing input is a clear error.
                    let deferred = std::mem::take(&mut executor.deferred);
                    if deferred.is_empty() {
                        return Ok(());
                    }
                    for (task, origin) in deferred {
                        self.push(executor, task, true, origin);
                    }
                    continue;
                }
                // Holding claims: wait for work rather than end and write
                // what is held, where waiting costs nothing (local threads).
                if let Some(mailbox) = executor
                    .mailbox
                    .as_ref()
                    .filter(|_| !executor.held.is_empty())
                {
                    match self.platform.idle(mailbox) {
                        Idle::Adopt(task, inputs) => {
                            add(&self.io.adoptions, 1);
                            self.preload(executor, task, inputs)?;
                            self.start_at(executor, task, self.remote.then_some(task));
                            continue;
                        }
                        Idle::Mail => continue,
                        Idle::End => {}
                    }
                }
                // Write what others may need from here, then close the
                // mailbox; whatever was delivered meanwhile still runs here.
                self.flush(executor)?;
                executor.mailbox = None;
                let last = self
                    .platform
                    .close_mailbox(executor.id)
                    .map_err(mail_error)?;
                self.accept(executor, last);
                continue;
            };
            let (task, origin) = (next.task.0, next.origin);
            // A task delivered or completed twice runs once here, and a
            // duplicated executor stops following a path that another one has
            // already finished; concurrent duplicates both run, harmlessly.
            if self.done[task.index()].load(Ordering::Acquire) {
                continue;
            }
            executor.held.remove(&task);
            self.run_task(executor, task, origin)?;
            if !executor.deferred.is_empty() {
                let held = &executor.held;
                let (ready, waiting): (Vec<Delivery>, Vec<Delivery>) = executor
                    .deferred
                    .iter()
                    .partition(|(t, _)| held.contains(t));
                executor.deferred = waiting;
                for (task, origin) in ready {
                    self.push(executor, task, true, origin);
                }
            }
            if self.wukong() {
                self.share(executor)?;
            }
        }
    }

    /// Queues delivered tasks; on platforms where a delivery may come before
    /// the data held for it (see [`Platform::deliveries_may_precede_data`]),
    /// those not yet held wait until this executor has produced that data.
    fn accept(&self, executor: &mut Executor<K::Value>, delivered: Vec<Delivery>) {
        for (task, origin) in delivered {
            if self.platform.deliveries_may_precede_data() && !executor.held.contains(&task) {
                if !executor.deferred.iter().any(|&(t, _)| t == task) {
                    executor.deferred.push((task, origin));
                }
            } else {
                self.push(executor, task, true, origin);
            }
        }
    }

    /// Writes `data` from the cache to the store unless it is there already.
    fn make_durable(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        data: DataId,
    ) -> Result<(), ExecError<K::Error>> {
        let Some(entry) = executor.cache.entry(data) else {
            return Ok(());
        };
        if entry.durable {
            return Ok(());
        }
        let value = Arc::clone(&entry.value);
        self.write(task, data, value)?;
        executor.cache.mark_durable(data);
        Ok(())
    }

    /// Stores `value`: the in-memory store keeps it as it is, the others its bytes.
    fn write(
        &self,
        task: TaskId,
        data: DataId,
        value: Arc<K::Value>,
    ) -> Result<(), ExecError<K::Error>> {
        let store_error = |source| ExecError::Store {
            task: Some(task),
            source,
        };
        let key = self.key(data).map_err(store_error)?;
        add(&self.io.store_writes, 1);
        add(&self.io.store_write_bytes, value.encoded_len());
        // A duplicated or retried writer of the same deterministic value succeeds.
        self.block(self.stores.objects.put_value_once(&key, value))
            .map_err(store_error)
    }

    fn read(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        data: DataId,
    ) -> Result<Arc<K::Value>, ExecError<K::Error>> {
        if let Some(value) = executor.cache.get(data) {
            add(&self.io.cache_hits, 1);
            add(&self.io.cache_hit_bytes, executor.cache.bytes_of(data));
            return Ok(value);
        }
        let store_error = |source| ExecError::Store {
            task: Some(task),
            source,
        };
        let key = self.key(data).map_err(store_error)?;
        let (value, len) = self
            .block(self.stores.objects.get_value::<K::Value>(&key))
            .map_err(store_error)?;
        add(&self.io.store_reads, 1);
        add(&self.io.store_read_bytes, len);
        if self.wukong() {
            let size = value.memory_bytes();
            executor.cache.insert(data, Arc::clone(&value), size, true);
        }
        Ok(value)
    }

    fn run_task(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        origin: Option<TaskId>,
    ) -> Result<(), ExecError<K::Error>> {
        let dag = self.dag;
        let start = self.elapsed();
        let reads = dag.reads(task);
        let mut inputs = Vec::with_capacity(reads.len());
        for &data in reads {
            inputs.push(self.read(executor, task, data)?);
        }
        // An item only this task reads leaves the cache now, so a kernel that
        // accumulates into it can take it over without a copy (unless the
        // store shares it too: then the kernel copies it first).
        for &data in reads {
            if dag.consumers(data) == [task] && !dag.is_output(data) {
                executor.cache.remove(data);
            }
        }

        let kernel_start = self.elapsed();
        let outputs = crate::local::execute_task(dag, self.kernels, task, inputs)?;
        let kernel = self.elapsed().saturating_sub(kernel_start);
        let writes = dag.writes(task);
        for (value, &data) in outputs.into_iter().zip(writes) {
            let needed = !dag.consumers(data).is_empty();
            let result = dag.is_output(data);
            if !needed && !result {
                continue;
            }
            let value = Arc::new(value);
            let durable = if result || !self.wukong() {
                self.write(task, data, Arc::clone(&value))?;
                true
            } else {
                false
            };
            if self.wukong() && needed {
                let size = value.memory_bytes();
                executor.cache.insert(data, value, size, durable);
            }
        }
        executor.records.push(TaskRecord {
            task,
            executor: executor.id.0,
            thread: executor.thread,
            start,
            end: self.elapsed(),
            kernel,
        });
        // The first time this process sees the task finish, it is counted:
        // here, or remotely by an arrival sent with the children's.
        let count = if self.done[task.index()].swap(true, Ordering::AcqRel) {
            None
        } else if self.remote {
            Some(Edge {
                child: DONE_NODE,
                edge: task.0,
                in_degree: self.dag.num_tasks() as u32,
            })
        } else {
            self.count_done(task)?;
            None
        };
        if let Some(plan) = &self.plan {
            self.route_children(executor, task, origin, plan, count)?;
            self.evict(executor, task)
        } else {
            let children = dag.children(task);
            let joins = children
                .iter()
                .map(|&child| Join {
                    edge: self.edge(task, child),
                    hold: Hold::Never,
                })
                .collect();
            for (&child, joined) in children
                .iter()
                .zip(self.join_all(task, None, joins, count)?)
            {
                if joined.arrival == Some(Arrival::Completed) {
                    self.invoke(child)?;
                }
            }
            Ok(())
        }
    }

    /// Counts a finished task in local mode and ends the run after the last.
    fn count_done(&self, task: TaskId) -> Result<(), ExecError<K::Error>> {
        let total = self.dag.num_tasks();
        let done = self.done_count.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(progress) = self.progress {
            progress(Progress { done, total });
        }
        if done == total {
            self.finish(task)?;
        }
        Ok(())
    }

    fn finish(&self, task: TaskId) -> Result<(), ExecError<K::Error>> {
        self.platform.finish().map_err(|source| ExecError::Invoke {
            task: Some(task),
            source,
        })
    }

    /// The arrival of `parent` at `child`.
    fn edge(&self, parent: TaskId, child: TaskId) -> Edge {
        let parents = self.dag.parents(child);
        Edge {
            child: u64::from(child.0),
            edge: parents.iter().position(|&p| p == parent).unwrap_or(0) as u32,
            in_degree: parents.len() as u32,
        }
    }

    /// Makes the arrivals (and claims) of `parent` in one request, with
    /// `count` (the arrival that counts `parent` as finished in remote modes)
    /// last; ends the run if that one completed. Answers the others.
    fn join_all(
        &self,
        parent: TaskId,
        holder: Option<Holder>,
        mut joins: Vec<Join>,
        count: Option<Edge>,
    ) -> Result<Vec<Joined>, ExecError<K::Error>> {
        let arrivals = joins.len();
        joins.extend(count.map(|edge| Join {
            edge,
            hold: Hold::Never,
        }));
        if joins.is_empty() {
            return Ok(Vec::new());
        }
        add(&self.io.arrivals, arrivals as u64);
        let mut joined = self
            .block(self.stores.coordinator.join_all(
                &self.job,
                &holder.map(|h| h.to_string()).unwrap_or_default(),
                &joins,
            ))
            .map_err(|source| ExecError::Store {
                task: Some(parent),
                source,
            })?;
        // A claim was made where a holder came back (not for a claim on
        // completion of a child that did not complete).
        let claims = joined.iter().filter(|j| j.holder.is_some()).count();
        add(&self.io.claims, claims as u64);
        if count.is_some() && joined.pop().and_then(|j| j.arrival) == Some(Arrival::Completed) {
            self.finish(parent)?;
        }
        Ok(joined)
    }

    /// Wukong: records arrivals, keeps or claims data, and queues the ready
    /// children. The arrivals at all children, their claims and `count` (see
    /// [`Self::join_all`]) take one request; a second one arrives where
    /// another executor's claim made this one write its data first.
    fn route_children(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        origin: Option<TaskId>,
        plan: &ClusterPlan,
        count: Option<Edge>,
    ) -> Result<(), ExecError<K::Error>> {
        let dag = self.dag;
        let edge_bytes = plan.edge_bytes(task);
        let me = self.platform.holder(executor.id, origin);
        // Children with other parents: (index among the children, child,
        // this edge's data that only this executor has, whether it claims first).
        let mut fan_in: Vec<(usize, TaskId, Vec<DataId>, bool)> = Vec::new();
        let mut joins = Vec::new();
        for (i, &child) in dag.children(task).iter().enumerate() {
            if dag.fan_in(child) == 1 {
                self.push(executor, child, plan.stays(task, i), origin);
                continue;
            }
            let reads = dag.reads(child);
            let pending: Vec<DataId> = dag
                .writes(task)
                .iter()
                .copied()
                .filter(|&d| reads.contains(&d))
                .filter(|&d| executor.cache.entry(d).is_some_and(|e| !e.durable))
                .collect();
            let name = || format!("hold/{}", child.0);
            // Declared sizes decide who holds, so that completers know whom to ask.
            let hold = if executor.mailbox.is_some()
                && !pending.is_empty()
                && edge_bytes[i] >= self.config.hold_min_bytes
            {
                Hold::First(name())
            } else {
                // Write before arrive.
                for &data in &pending {
                    self.make_durable(executor, task, data)?;
                }
                match self.holdable[child.index()] {
                    true => Hold::OnCompletion(name()),
                    false => Hold::Never,
                }
            };
            let first = matches!(hold, Hold::First(_));
            joins.push(Join {
                edge: self.edge(task, child),
                hold,
            });
            fan_in.push((i, child, pending, first));
        }
        let mut joined = self.join_all(task, Some(me), joins, count)?;
        // Another executor holds these children: write, then arrive.
        let mut late = Vec::new();
        for (j, (_, child, pending, first)) in fan_in.iter().enumerate() {
            if joined[j].arrival.is_none() {
                for &data in pending {
                    self.make_durable(executor, task, data)?;
                }
                late.push(j);
            } else if *first {
                // Won: the data stays here and the child comes here.
                executor.held.insert(*child);
            }
        }
        let joins = late
            .iter()
            .map(|&j| Join {
                edge: self.edge(task, fan_in[j].1),
                hold: Hold::Never,
            })
            .collect();
        for (&j, answer) in late.iter().zip(self.join_all(task, Some(me), joins, None)?) {
            joined[j].arrival = answer.arrival;
        }
        // The arrivals that completed a child: run it where its held data is.
        for (j, &(i, child, ..)) in fan_in.iter().enumerate() {
            if joined[j].arrival != Some(Arrival::Completed) {
                continue;
            }
            let pinned = plan.stays(task, i);
            let holder = match joined[j].holder.take() {
                None => me,
                Some(name) => name.parse::<Holder>().map_err(|_| ExecError::BadClaim {
                    child,
                    holder: name,
                })?,
            };
            if holder == me {
                let pinned = pinned || executor.held.contains(&child);
                self.push(executor, child, pinned, origin);
                continue;
            }
            let delivered =
                self.platform
                    .deliver(holder, child)
                    .map_err(|source| ExecError::Invoke {
                        task: Some(child),
                        source,
                    })?;
            match delivered {
                Delivered::Yes => add(&self.io.deliveries, 1),
                // The holder has ended, after writing what it held.
                Delivered::Ended => self.push(executor, child, pinned, origin),
                Delivered::Unknown => {
                    return Err(ExecError::BadClaim {
                        child,
                        holder: holder.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Hands free queued tasks to new executors while the platform has spare
    /// capacity, keeping the best task (the one this executor becomes next)
    /// and giving away those with the least local data first.
    fn share(&self, executor: &mut Executor<K::Value>) -> Result<(), ExecError<K::Error>> {
        let keep_one = usize::from(executor.pinned.is_empty());
        // Nothing to give away: do not ask the platform (a round trip remotely).
        if executor.free.len() <= keep_one {
            return Ok(());
        }
        if !self.due(&mut executor.capacity_asked) {
            return Ok(());
        }
        let mut spare = self.platform.spare_capacity();
        if spare == 0 {
            return Ok(());
        }
        let best = if keep_one == 1 {
            executor.free.pop()
        } else {
            None
        };
        let mut candidates = Vec::new();
        while candidates.len() < 8 {
            let Some(next) = executor.free.pop() else {
                break;
            };
            candidates.push(next);
        }
        let local_bytes = |cache: &TileCache<K::Value>, task: TaskId| -> u64 {
            self.dag
                .reads(task)
                .iter()
                .map(|&d| cache.bytes_of(d))
                .sum()
        };
        candidates.sort_by_cached_key(|c| local_bytes(&executor.cache, c.task.0));
        for candidate in candidates {
            if spare == 0 {
                executor.free.push(candidate);
                continue;
            }
            let task = candidate.task.0;
            for &data in self.dag.reads(task) {
                self.make_durable(executor, task, data)?;
            }
            let inline = self.inline_inputs(executor, task)?;
            self.invoke_with(task, inline)?;
            spare -= 1;
        }
        executor.free.extend(best);
        Ok(())
    }

    /// Before the executor ends: writes what it held for children that have
    /// not run here, so whoever runs them finds their inputs in the store.
    fn flush(&self, executor: &mut Executor<K::Value>) -> Result<(), ExecError<K::Error>> {
        let held: Vec<TaskId> = executor.held.drain().collect();
        for child in held {
            for &data in self.dag.reads(child) {
                self.make_durable(executor, child, data)?;
            }
        }
        Ok(())
    }

    /// Keeps the cache within its budget, writing what is not yet durable.
    fn evict(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
    ) -> Result<(), ExecError<K::Error>> {
        while let Some(victim) = executor.cache.victim(&[]) {
            self.make_durable(executor, task, victim)?;
            executor.cache.remove(victim);
        }
        Ok(())
    }
}
