//! A run: the state its executors share, the local threads that host them,
//! and how it fails and ends.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use wukong_dag::{Dag, DataId, Operation, TaskId};
use wukong_storage::{JobId, ObjectKey, StorageError, StoredValue};

use super::executor::Executor;
use super::io::{Counters, add, block_on, read_outputs, stage_inputs};
use super::{EngineConfig, Mode, Site, Stores, data_key};
use crate::cache::TileCache;
use crate::platform::{ExecutorId, InvokeError, Platform};
use crate::pool::ThreadPool;
use crate::{ExecError, ExecutorRecord, Kernels, Progress, RunOutcome, RunReport, TaskRecord};

/// The pseudo-task whose "arrivals" count finished tasks in remote modes: the
/// arrival that completes it tells its executor that the job is done.
pub(super) const DONE_NODE: u64 = 1 << 32;

/// One run of a graph: what every executor of this process shares.
pub(super) struct Run<'a, Op, K: Kernels<Op>> {
    pub(super) dag: &'a Dag<Op>,
    pub(super) kernels: &'a K,
    pub(super) mode: Mode,
    pub(super) config: &'a EngineConfig,
    pub(super) stores: &'a Stores,
    pub(super) job: JobId,
    pub(super) platform: &'a dyn Platform,
    pub(super) site: Site<'a>,
    pub(super) done: Vec<AtomicBool>,
    pub(super) done_count: AtomicUsize,
    pub(super) failure: Mutex<Option<ExecError<K::Error>>>,
    pub(super) stopped: AtomicBool,
    pub(super) next_executor: AtomicU32,
    pub(super) io: Counters,
    /// When the run started, on the platform's clock.
    pub(super) start: Duration,
    /// Local Wukong runs: inputs that only one source task reads, handed to
    /// the executor that starts there instead of going through the store.
    pub(super) handoff: Mutex<Handoff<K::Value>>,
}

/// Inputs handed to the executor that starts at each task.
type Handoff<V> = HashMap<TaskId, Vec<(DataId, Arc<V>)>>;

type Outcome<V, E> = Result<RunOutcome<V>, ExecError<E>>;

impl<'a, Op, K> Run<'a, Op, K>
where
    Op: Operation + Sync,
    K: Kernels<Op>,
    K::Value: StoredValue,
{
    /// A run of `dag` under `mode`, its executors at `site`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        dag: &'a Dag<Op>,
        kernels: &'a K,
        config: &'a EngineConfig,
        stores: &'a Stores,
        job: JobId,
        platform: &'a dyn Platform,
        mode: Mode,
        site: Site<'a>,
    ) -> Self {
        Self {
            dag,
            kernels,
            mode,
            config,
            stores,
            job,
            platform,
            done: (0..dag.num_tasks())
                .map(|_| AtomicBool::new(false))
                .collect(),
            done_count: AtomicUsize::new(0),
            failure: Mutex::new(None),
            stopped: AtomicBool::new(false),
            next_executor: AtomicU32::new(match site {
                Site::Threads { .. } => 0,
                Site::Remote { first_executor } => first_executor,
            }),
            site,
            io: Counters::default(),
            start: platform.clock().now(),
            handoff: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a poll last made at `last` may be made again (see
    /// [`EngineConfig::poll_interval`]); if so, it counts as made now.
    pub(super) fn due(&self, last: &mut Option<Duration>) -> bool {
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
    pub(super) fn elapsed(&self) -> Duration {
        self.platform.clock().since(self.start)
    }

    pub(super) fn wukong(&self) -> bool {
        matches!(self.mode, Mode::Wukong { .. })
    }

    pub(super) fn remote(&self) -> bool {
        matches!(self.site, Site::Remote { .. })
    }

    pub(super) fn key(&self, data: DataId) -> Result<ObjectKey, StorageError> {
        data_key(&self.job, data)
    }

    pub(super) fn block<T>(
        &self,
        future: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        block_on(self.stores.runtime.as_ref(), future)
    }

    pub(super) fn execute(
        &self,
        pool: &ThreadPool,
        inputs: impl IntoIterator<Item = (DataId, Arc<K::Value>)>,
    ) -> Outcome<K::Value, K::Error> {
        let dag = self.dag;
        let mut staged = crate::local::checked_inputs(dag, inputs)?;
        if self.wukong() && !self.remote() {
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
                warnings: Vec::new(),
            },
        })
    }

    /// A pool thread: runs executors until the run is over. Its tile cache
    /// outlives each executor, as a warm worker's memory does: tiles are
    /// single-assignment, so a cached tile is never stale.
    pub(super) fn host(
        &self,
        pool: &ThreadPool,
        thread: u32,
    ) -> (Vec<TaskRecord>, Vec<ExecutorRecord>) {
        let mut tasks = Vec::new();
        let mut executors = Vec::new();
        let mut cache = Some(TileCache::new(self.config.cache_bytes));
        while let Some(first) = pool.next() {
            if self.stopped.load(Ordering::Relaxed) {
                break;
            }
            let id = ExecutorId(self.next_executor.fetch_add(1, Ordering::Relaxed));
            let start = self.elapsed();
            let warm = cache
                .take()
                .unwrap_or_else(|| TileCache::new(self.config.cache_bytes));
            let mailbox = match self.wukong() {
                true => self.platform.open_mailbox(id).unwrap_or_else(|source| {
                    self.fail(pool, ExecError::Invoke { task: None, source });
                    None
                }),
                false => None,
            };
            let mut executor = Executor::new(id, thread, warm, mailbox);
            self.start_at(&mut executor, first, None);
            if let Err(failure) = self.executor_loop(&mut executor) {
                self.fail(pool, failure);
            }
            if executor.mailbox.is_some() {
                // The loop stopped early (a failure, the run's end) and left
                // its mailbox open.
                if let Err(error) = self.platform.close_mailbox(id) {
                    self.fail(
                        pool,
                        ExecError::Invoke {
                            task: None,
                            source: error,
                        },
                    );
                }
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

    pub(super) fn fail(&self, pool: &ThreadPool, failure: ExecError<K::Error>) {
        self.failure.lock().get_or_insert(failure);
        self.stopped.store(true, Ordering::Relaxed);
        pool.stop();
    }

    /// Counts a finished task in local mode and ends the run after the last.
    pub(super) fn count_done(&self, task: TaskId) -> Result<(), ExecError<K::Error>> {
        let total = self.dag.num_tasks();
        let done = self.done_count.fetch_add(1, Ordering::AcqRel) + 1;
        if let Site::Threads {
            progress: Some(progress),
        } = self.site
        {
            progress(Progress { done, total });
        }
        if done == total {
            self.finish(task)?;
        }
        Ok(())
    }

    pub(super) fn finish(&self, task: TaskId) -> Result<(), ExecError<K::Error>> {
        self.platform.finish().map_err(|source| ExecError::Invoke {
            task: Some(task),
            source,
        })
    }
}
