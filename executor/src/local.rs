use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use wukong_dag::{Dag, DataId, Operation, TaskId};
use wukong_storage::{SlotStore, StorageError};

use crate::{ExecError, Kernels, Progress, RunOptions, RunOutcome, RunReport, TaskRecord};

/// Runs a graph on a fixed number of threads of this process.
///
/// Scheduling: every finished task counts down its children's missing parents;
/// a child whose count reaches zero joins a ready queue ordered by critical-path
/// priority. An intermediate value is released as soon as its last reader has
/// started, so a kernel that accumulates into an input can take it over without
/// a copy, and memory holds only live tiles.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    threads: usize,
}

impl LocalExecutor {
    /// An executor with `threads` worker threads.
    pub fn new(threads: usize) -> Self {
        Self { threads }
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `dag` with `kernels`, starting from values for every input of the
    /// graph, and returns the graph's outputs.
    ///
    /// The first failing task stops the run: no new task starts, tasks already
    /// running finish, and its error is returned.
    pub fn run<Op, K>(
        &self,
        dag: &Dag<Op>,
        kernels: &K,
        inputs: impl IntoIterator<Item = (DataId, Arc<K::Value>)>,
        options: &RunOptions<'_>,
    ) -> Result<RunOutcome<K::Value>, ExecError<K::Error>>
    where
        Op: Operation + Sync,
        K: Kernels<Op>,
    {
        if self.threads == 0 {
            return Err(ExecError::NoThreads);
        }
        let store = SlotStore::new(dag.num_data());
        for (data, value) in checked_inputs(dag, inputs)? {
            store
                .put(data.index(), value)
                .map_err(|_| ExecError::NotAnInput { data })?;
        }

        let start = Instant::now();
        let run = Run {
            dag,
            kernels,
            store,
            readers_left: (0..dag.num_data())
                .map(|d| AtomicU32::new(dag.consumers(DataId(d as u32)).len() as u32))
                .collect(),
            parents_left: (0..dag.num_tasks())
                .map(|t| AtomicU32::new(dag.fan_in(TaskId(t as u32)) as u32))
                .collect(),
            queue: Mutex::new(Queue {
                ready: dag.sources().map(|t| Ready::new(dag, t)).collect(),
                done: 0,
                failure: None,
            }),
            wake: Condvar::new(),
            start,
            progress: options.progress,
        };
        let mut tasks: Vec<TaskRecord> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..self.threads as u32)
                .map(|id| {
                    let run = &run;
                    scope.spawn(move || run.worker(id))
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        let wall = start.elapsed();
        if let Some(failure) = run.queue.into_inner().failure {
            return Err(failure);
        }
        tasks.sort_by_key(|r| r.end);
        let mut outputs = HashMap::with_capacity(dag.outputs().len());
        for &data in dag.outputs() {
            let value = run
                .store
                .get(data.index())
                .map_err(|source| ExecError::Store {
                    task: dag.producer(data),
                    source,
                })?;
            outputs.insert(data, value);
        }
        Ok(RunOutcome {
            outputs,
            report: RunReport {
                scheduler: "shared".into(),
                wall,
                threads: self.threads,
                executors: self.threads,
                tasks,
                ..RunReport::default()
            },
        })
    }
}

/// A ready task, ordered by priority, then by declaration order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    // Non-negative finite floats order like their bit patterns.
    priority: u64,
    task: Reverse<TaskId>,
}

impl Ready {
    fn new<Op>(dag: &Dag<Op>, task: TaskId) -> Self {
        Self {
            priority: dag.priority(task).to_bits(),
            task: Reverse(task),
        }
    }
}

struct Queue<E: std::error::Error + 'static> {
    ready: BinaryHeap<Ready>,
    done: usize,
    failure: Option<ExecError<E>>,
}

struct Run<'a, Op, K: Kernels<Op>> {
    dag: &'a Dag<Op>,
    kernels: &'a K,
    store: SlotStore<K::Value>,
    readers_left: Vec<AtomicU32>,
    parents_left: Vec<AtomicU32>,
    queue: Mutex<Queue<K::Error>>,
    wake: Condvar,
    start: Instant,
    progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

impl<Op: Operation + Sync, K: Kernels<Op>> Run<'_, Op, K> {
    fn worker(&self, executor: u32) -> Vec<TaskRecord> {
        let total = self.dag.num_tasks();
        let mut records = Vec::new();
        let mut ready_children = Vec::new();
        loop {
            let task = {
                let mut queue = self.queue.lock();
                loop {
                    if queue.failure.is_some() || queue.done == total {
                        return records;
                    }
                    if let Some(ready) = queue.ready.pop() {
                        break ready.task.0;
                    }
                    self.wake.wait(&mut queue);
                }
            };
            let start = self.start.elapsed();
            ready_children.clear();
            let result = self.run_task(task, &mut ready_children);
            let end = self.start.elapsed();
            let mut queue = self.queue.lock();
            if let Err(failure) = result {
                queue.failure.get_or_insert(failure);
                drop(queue);
                self.wake.notify_all();
                return records;
            }
            records.push(TaskRecord {
                task,
                executor,
                thread: executor,
                start,
                end,
                kernel: end.saturating_sub(start),
            });
            queue.done += 1;
            let done = queue.done;
            queue
                .ready
                .extend(ready_children.iter().map(|&c| Ready::new(self.dag, c)));
            drop(queue);
            if done == total {
                self.wake.notify_all();
            } else {
                // This worker takes one of them itself at the top of the loop.
                for _ in 1..ready_children.len() {
                    self.wake.notify_one();
                }
            }
            if let Some(progress) = self.progress {
                progress(Progress { done, total });
            }
        }
    }

    fn run_task(
        &self,
        task: TaskId,
        ready_children: &mut Vec<TaskId>,
    ) -> Result<(), ExecError<K::Error>> {
        let dag = self.dag;
        let store_error = |source: StorageError| ExecError::Store {
            task: Some(task),
            source,
        };
        let reads = dag.reads(task);
        let mut inputs = Vec::with_capacity(reads.len());
        for &data in reads {
            inputs.push(self.store.get(data.index()).map_err(store_error)?);
        }
        for (i, &data) in reads.iter().enumerate() {
            let first_mention = !reads[..i].contains(&data);
            if first_mention
                && self.readers_left[data.index()].fetch_sub(1, Ordering::AcqRel) == 1
                && !dag.is_output(data)
            {
                self.store.take(data.index()).map_err(store_error)?;
            }
        }

        let outputs = execute_task(dag, self.kernels, task, inputs)?;
        for (value, &data) in outputs.into_iter().zip(dag.writes(task)) {
            if dag.consumers(data).is_empty() && !dag.is_output(data) {
                continue;
            }
            self.store
                .put(data.index(), Arc::new(value))
                .map_err(store_error)?;
        }
        for &child in dag.children(task) {
            if self.parents_left[child.index()].fetch_sub(1, Ordering::AcqRel) == 1 {
                ready_children.push(child);
            }
        }
        Ok(())
    }
}

/// The caller's values for the graph's inputs, checked before anything runs:
/// each names an input of `dag`, none twice, and no input is left out.
pub(crate) fn checked_inputs<Op: Operation, V, E: std::error::Error>(
    dag: &Dag<Op>,
    inputs: impl IntoIterator<Item = (DataId, Arc<V>)>,
) -> Result<Vec<(DataId, Arc<V>)>, ExecError<E>> {
    let mut given = vec![false; dag.num_data()];
    let mut checked = Vec::new();
    for (data, value) in inputs {
        let is_input = data.index() < dag.num_data() && dag.producer(data).is_none();
        if !is_input || given[data.index()] {
            return Err(ExecError::NotAnInput { data });
        }
        given[data.index()] = true;
        checked.push((data, value));
    }
    if let Some(data) = dag.inputs().find(|d| !given[d.index()]) {
        return Err(ExecError::MissingInput { data });
    }
    Ok(checked)
}

/// Runs `task`'s kernel on `inputs`, turning a panic or a wrong number of
/// outputs into an error that names the task.
pub(crate) fn execute_task<Op: Operation, K: Kernels<Op>>(
    dag: &Dag<Op>,
    kernels: &K,
    task: TaskId,
    inputs: Vec<Arc<K::Value>>,
) -> Result<Vec<K::Value>, ExecError<K::Error>> {
    let op = dag.op(task);
    let outputs = catch_unwind(AssertUnwindSafe(|| kernels.execute(op, inputs)))
        .map_err(|panic| ExecError::Panicked {
            task,
            label: op.label(),
            message: panic_message(panic.as_ref()),
        })?
        .map_err(|source| ExecError::Task {
            task,
            label: op.label(),
            source,
        })?;
    let expected = dag.writes(task).len();
    if outputs.len() != expected {
        return Err(ExecError::WrongOutputCount {
            task,
            label: op.label(),
            expected,
            got: outputs.len(),
        });
    }
    Ok(outputs)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
