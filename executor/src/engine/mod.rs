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

mod config;
mod executor;
mod fan_in;
mod io;
mod run;
mod share;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use wukong_dag::{ClusterPlan, Dag, DataId, Operation, TaskId};
use wukong_storage::{JobId, ObjectKey, ObjectStoreExt, StorageError, StoredValue};

pub use config::{EngineConfig, Scheduler, Stores};
use executor::Executor;
use io::{block_on, read_outputs, stage_inputs};
use run::Run;

use crate::cache::TileCache;
use crate::platform::{ExecutorId, InlineInputs, Platform};
use crate::pool::ThreadPool;
use crate::{
    ExecError, ExecutorRecord, IoReport, Kernels, Progress, RunOptions, RunOutcome, TaskRecord,
};

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
        let mode = match self.config.scheduler {
            Scheduler::Wukong => Mode::wukong(dag, &self.config, true),
            _ => Mode::Central,
        };
        let pool = ThreadPool::new(self.config.threads);
        let site = Site::Threads {
            progress: options.progress,
        };
        let run = Run::new(dag, kernels, &self.config, stores, job, &pool, mode, site);
        let mut result = run.execute(&pool, inputs);
        if !self.config.keep_objects {
            // A failed clean-up must not hide the run's result.
            let cleaned = block_on(stores.runtime.as_ref(), async {
                stores.objects.delete_job(&run.job).await?;
                stores.coordinator.clear_job(&run.job).await
            });
            if let Err(error) = cleaned {
                crate::RunReport::clean_up_failed(&mut result, &run.job, &error);
            }
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
    /// has nothing left to do. New executors start through `platform`, which
    /// also hears when the job's last task has finished. `cache` is the
    /// worker's tile cache; it is emptied when the job changes. `inline`
    /// holds encoded inputs that came with the invocation (checked like any
    /// stored tile); they go to the cache.
    ///
    /// If the platform opens a mailbox, the executor holds fan-in data
    /// under claims in its start's name and takes deliveries there, as
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
        let invoke_error = |source| ExecError::Invoke {
            task: Some(start),
            source,
        };
        let executor_id = ExecutorId(id.executor);
        let (mode, mailbox) = match self.config.scheduler {
            Scheduler::Numpywren => (Mode::Central, None),
            _ => {
                let mailbox = platform.open_mailbox(executor_id).map_err(invoke_error)?;
                // Without a mailbox, nothing is held under a claim.
                let mode = Mode::wukong(dag, &self.config, mailbox.is_some());
                (mode, mailbox)
            }
        };
        let site = Site::Remote {
            first_executor: id.executor,
        };
        let run = Run::new(
            dag,
            kernels,
            &self.config,
            stores,
            job.clone(),
            platform,
            mode,
            site,
        );
        if cache.job.as_ref() != Some(job) {
            cache.cache = TileCache::new(self.config.cache_bytes);
            cache.job = Some(job.clone());
        }
        let worker_cache = std::mem::replace(&mut cache.cache, TileCache::new(0));
        let mut executor = Executor::new(executor_id, id.worker, worker_cache, mailbox);
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

/// The rules a run's executors follow, fixed when the run is made.
enum Mode {
    /// numpywren-style: every task is its own executor, and every edge goes
    /// through the store.
    Central,
    /// Wukong: executors become their ready children along the clustering
    /// plan and hold fan-in data under claims.
    Wukong {
        plan: ClusterPlan,
        /// Per task: whether some parent may hold its data under a claim (an
        /// edge declares at least `hold_min_bytes`, and executors take
        /// deliveries); if not, nobody claims it.
        holdable: Vec<bool>,
    },
}

impl Mode {
    /// Wukong's rules for `dag`; `deliveries`: whether executors can be
    /// told of a child delivered to them (else nothing is held).
    fn wukong<Op: Operation>(dag: &Dag<Op>, config: &EngineConfig, deliveries: bool) -> Self {
        let plan = ClusterPlan::new(dag, config.cluster);
        let holdable = match deliveries {
            true => holdable_children(dag, &plan, config.hold_min_bytes),
            false => vec![false; dag.num_tasks()],
        };
        Self::Wukong { plan, holdable }
    }
}

/// Where a run's executors live.
enum Site<'a> {
    /// Threads of this process: the run counts finished tasks itself and
    /// reports them to `progress`.
    Threads {
        progress: Option<&'a (dyn Fn(Progress) + Sync)>,
    },
    /// One executor of a job in another process or function: the job's end
    /// is counted in the coordinator. Executors it starts are numbered
    /// from `first_executor` in its reports.
    Remote { first_executor: u32 },
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
