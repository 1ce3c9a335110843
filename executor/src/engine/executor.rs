//! One executor: its ready queue, its loop, and how it runs a task.

use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use wukong_dag::{Operation, TaskId};
use wukong_storage::{Arrival, Edge, Hold, Join, StoredValue};

use super::Mode;
use super::io::add;
use super::run::{DONE_NODE, Run};
use crate::cache::TileCache;
use crate::platform::{Delivery, ExecutorId, Idle, InlineInputs, Mailbox};
use crate::{ExecError, Kernels, TaskRecord};

/// One executor's state.
pub(super) struct Executor<V> {
    pub(super) id: ExecutorId,
    pub(super) thread: u32,
    pub(super) cache: TileCache<V>,
    /// Ready tasks that the clustering plan or a held claim keeps here.
    pub(super) pinned: BinaryHeap<Local>,
    /// Ready tasks that may be handed to another executor.
    pub(super) free: BinaryHeap<Local>,
    /// Children whose claim this executor holds and that have not run here.
    pub(super) held: HashSet<TaskId>,
    /// Delivered tasks whose held data this executor has not produced yet
    /// (it re-runs the work of a lost executor that claimed them).
    pub(super) deferred: Vec<Delivery>,
    pub(super) mailbox: Option<Arc<Mailbox>>,
    pub(super) records: Vec<TaskRecord>,
    /// When the mailbox was last read, and spare capacity last asked for.
    pub(super) mail_read: Option<Duration>,
    pub(super) capacity_asked: Option<Duration>,
}

/// A task in an executor's own ready queue.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Local {
    pub(super) priority: u64,
    pub(super) task: std::cmp::Reverse<TaskId>,
    /// The start taken over whose work this is (see [`Platform::holder`]);
    /// `None`: the executor's own.
    pub(super) origin: Option<TaskId>,
}

impl<V> Executor<V> {
    /// A new executor on `thread` (or worker) with that worker's cache.
    pub(super) fn new(
        id: ExecutorId,
        thread: u32,
        cache: TileCache<V>,
        mailbox: Option<Arc<Mailbox>>,
    ) -> Self {
        Self {
            id,
            thread,
            cache,
            pinned: BinaryHeap::new(),
            free: BinaryHeap::new(),
            held: HashSet::new(),
            deferred: Vec::new(),
            mailbox,
            records: Vec::new(),
            mail_read: None,
            capacity_asked: None,
        }
    }

    /// The highest-priority ready task, pinned or free.
    pub(super) fn pop(&mut self) -> Option<Local> {
        match (self.pinned.peek(), self.free.peek()) {
            (Some(p), Some(f)) if f > p => self.free.pop(),
            (Some(_), _) => self.pinned.pop(),
            (None, _) => self.free.pop(),
        }
    }
}

impl<'a, Op, K> Run<'a, Op, K>
where
    Op: Operation + Sync,
    K: Kernels<Op>,
    K::Value: StoredValue,
{
    /// Queues the start `task`, with the inputs handed to it; `origin` is
    /// `Some(task)` for a start taken over on a remote platform, which stays
    /// with this executor: its start claim is taken, so nobody else would
    /// run it.
    pub(super) fn start_at(
        &self,
        executor: &mut Executor<K::Value>,
        task: TaskId,
        origin: Option<TaskId>,
    ) {
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

    pub(super) fn push(
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

    /// Puts inputs that came with the invocation into the cache.
    pub(super) fn preload(
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

    pub(super) fn executor_loop(
        &self,
        executor: &mut Executor<K::Value>,
    ) -> Result<(), ExecError<K::Error>> {
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
                            self.start_at(executor, task, self.remote().then_some(task));
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
    pub(super) fn accept(&self, executor: &mut Executor<K::Value>, delivered: Vec<Delivery>) {
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

    pub(super) fn run_task(
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
        } else if self.remote() {
            Some(Edge {
                child: DONE_NODE,
                edge: task.0,
                in_degree: self.dag.num_tasks() as u32,
            })
        } else {
            self.count_done(task)?;
            None
        };
        if let Mode::Wukong { plan, holdable } = &self.mode {
            self.route_children(executor, task, origin, plan, holdable, count)?;
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
}
