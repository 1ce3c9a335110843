//! Worker hosts: run the executors of invocations, one at a time, with a
//! warm cache of jobs and tiles.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wukong_dag::{Dag, TaskId};
use wukong_storage::JobId;

use super::connection::{Connection, SharedListener};
use super::dispatch::{JobDispatcher, Waiting};
use super::protocol::{
    Failure, IDLE_WAIT, Invocation, JobSpec, LeaseHolder, ReportMessage, StartLease, idle_set,
    reports_queue, started_counter, unix_ms,
};
use super::{FORMAT, KernelRegistry, RemoteError};
use crate::{Engine, EngineConfig, ExecutorSlot, Scheduler, WorkerCache};

/// A job as a worker holds it: decoded once, kept while warm.
pub(super) struct LoadedJob<R: KernelRegistry> {
    pub(super) spec: JobSpec,
    pub(super) dag: Dag<R::Op>,
    pub(super) kernels: R::Kernels,
    pub(super) engine: Engine,
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

    pub(super) fn job(&self, job: &JobId) -> Result<Arc<LoadedJob<R>>, RemoteError> {
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
        let scheduler: Scheduler = spec
            .scheduler
            .parse()
            .map_err(|e: wukong_dag::UnknownName| unknown(e.to_string()))?;
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
    pub(super) fn run(
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
        let holder = LeaseHolder {
            attempt: invocation.attempt,
            worker: self.worker,
            executor,
        }
        .to_string();
        let lease = StartLease(task).to_string();
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
                checked: Mutex::new(self.connection.clock.now()),
                marked: Mutex::new(None),
            }),
            adopted: Mutex::new(Vec::new()),
        };
        let renewal = Renewal::start(&self.connection, &job, &lease, &holder, ttl);
        let result = {
            let _renewal = match renewal {
                Ok(renewal) => renewal,
                // The start is ours: without a renewed lease it would be
                // invoked again while it runs, so the job fails instead.
                Err(e) => {
                    return Ok(self
                        .connection
                        .fail(&job, task, e.to_string(), Failure::Untyped));
                }
            };
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
                let pushed = serde_json::to_vec(&message)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        let queue = reports_queue(&job);
                        let push = self.connection.broker.push_message(&queue, &bytes);
                        self.connection.block(push).map_err(|e| e.to_string())
                    });
                if let Err(error) = pushed {
                    eprintln!(
                        "wukong worker: the report of task {task} of job {job} is lost: {error}"
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
pub(super) struct Renewal {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Renewal {
    pub(super) fn start(
        connection: &Connection,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Self, RemoteError> {
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
            .map_err(|e| RemoteError::Setup {
                what: "starting the lease renewal thread",
                detail: e.to_string(),
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
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
