//! Starting executors, and handing work to live ones.
//!
//! [`Invoker`] is what an executor needs from the platform it runs on: start a
//! new executor at a task, say how many more could start at once, and deliver
//! a task to an executor that is still running. Local mode implements it with
//! a pool of threads ([`ThreadPool`]); worker processes and Lambda functions
//! implement the same three calls over Redis and the Lambda API.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use wukong_dag::{DataId, TaskId};

/// An executor's number within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ExecutorId(pub u32);

impl std::fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// Why an executor could not be started.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot start an executor on {platform}: {detail}")]
pub struct InvokeError {
    /// `threads`, `processes` or `lambda`.
    pub platform: &'static str,
    /// What the platform reported.
    pub detail: String,
}

/// Starts executors and hands tasks to running ones.
pub trait Invoker: Send + Sync {
    /// Starts a new executor whose first task is `task` (ready to run: its
    /// inputs are in the store). `priority` orders waiting starts where the
    /// platform queues them.
    fn invoke(&self, task: TaskId, priority: f64) -> Result<(), InvokeError>;

    /// How many more executors could start now without waiting for a CPU:
    /// idle threads in local mode, the concurrency left on elastic platforms.
    fn spare_capacity(&self) -> usize;

    /// Hands `task` to the running executor `executor`; `false` if it has
    /// finished (then everything it held for others is in the store).
    fn deliver(&self, executor: ExecutorId, task: TaskId) -> bool;
}

/// Encoded inputs offered to travel with an invocation.
pub type InlineInputs = Vec<(DataId, Vec<u8>)>;

/// What an executor run in another process or function needs from its
/// platform: start executors, and say when the whole job has finished.
/// Worker processes implement it over Redis, Lambda over the Lambda API.
pub trait Dispatcher: Send + Sync {
    /// Starts a new executor at `task`, whose inputs are in the store.
    fn invoke(&self, task: TaskId, priority: f64) -> Result<(), InvokeError>;

    /// Like [`invoke`](Self::invoke), offering small inputs of `task`
    /// (encoded, also in the store) to travel with the invocation, so that the
    /// new executor need not read them; the default ignores them.
    fn invoke_with_inputs(
        &self,
        task: TaskId,
        priority: f64,
        _inputs: InlineInputs,
    ) -> Result<(), InvokeError> {
        self.invoke(task, priority)
    }

    /// How many more executors could start now without queueing.
    fn spare_capacity(&self) -> usize;

    /// The last task of the job has finished here. May be called again by a
    /// duplicated executor; the driver must not mind.
    fn finished(&self) -> Result<(), InvokeError>;

    /// Opens this executor's mailbox, so that it can hold a fan-in child's
    /// data under a claim and have the child delivered; `false` (the default)
    /// where the platform cannot deliver.
    fn open_mailbox(&self) -> Result<bool, InvokeError> {
        Ok(false)
    }

    /// The name under which this executor claims children for the work of
    /// `origin`: its own start (`None`) or a start it took over (see
    /// [`wait_for_start`](Self::wait_for_start)). Whoever runs that start's
    /// work after it is lost must use the same name, and find in its mailbox
    /// everything delivered to it.
    fn holder(&self, _origin: Option<TaskId>) -> String {
        String::new()
    }

    /// Tasks delivered to this executor's mailboxes since the last call.
    fn take_mail(&self) -> Result<Vec<Delivery>, InvokeError> {
        Ok(Vec::new())
    }

    /// Closes the mailboxes and returns what was delivered since the last take.
    fn close_mailbox(&self) -> Result<Vec<Delivery>, InvokeError> {
        Ok(Vec::new())
    }

    /// The executor holds claims and has nothing to run: wait a little for
    /// an invocation of the same job that it can take over (its start, whose
    /// lease and mailbox it then keeps until it ends). The default ends.
    fn wait_for_start(&self) -> Result<Waited, InvokeError> {
        Ok(Waited::End)
    }

    /// Delivers `task` to the executor that claims under `holder`; `false` if
    /// its mailbox is closed (it has written what it held), or the name
    /// is not one of this platform's.
    fn deliver(&self, _holder: &str, _task: TaskId) -> Result<bool, InvokeError> {
        Ok(false)
    }
}

/// A delivered task, with the start taken over by its executor (see
/// [`Dispatcher::wait_for_start`]) whose mailbox it came to; `None` for the
/// executor's own.
pub type Delivery = (TaskId, Option<TaskId>);

/// What [`Dispatcher::wait_for_start`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// A start of the job, now this executor's, with its inline inputs.
    Start(TaskId, InlineInputs),
    /// Nothing yet: look at the mailboxes, then wait again.
    Nothing,
    /// Stop waiting: write what is held and end.
    End,
}

/// What the engine needs from where its executors live: [`Invoker`], plus
/// mailboxes and the end of the run.
pub(crate) trait Platform: Invoker {
    /// Opens a mailbox for a new executor; `None` where tasks cannot be
    /// delivered to a running executor (then nobody holds data under a claim).
    fn open_mailbox(&self, executor: ExecutorId) -> Result<Option<Arc<Mailbox>>, InvokeError>;

    /// Moves what was delivered elsewhere (another process) into `mailbox`.
    fn collect_mail(&self, _mailbox: &Mailbox) -> Result<(), InvokeError> {
        Ok(())
    }

    /// Closes the executor's mailbox and returns what arrived last.
    fn close_mailbox(&self, executor: ExecutorId) -> Result<Vec<Delivery>, InvokeError>;

    /// The name `executor` claims under for the work of `origin` (see
    /// [`Dispatcher::holder`]).
    fn holder(&self, executor: ExecutorId, _origin: Option<TaskId>) -> String {
        executor.to_string()
    }

    /// Delivers `task` to the claim holder `holder`: `Some(false)` if it has
    /// ended, `None` if the name means nothing here.
    fn deliver_to(&self, holder: &str, task: TaskId) -> Result<Option<bool>, InvokeError> {
        Ok(holder
            .strip_prefix('e')
            .and_then(|n| n.parse().ok())
            .map(|executor| self.deliver(ExecutorId(executor), task)))
    }

    /// Whether a delivered task may arrive before this executor has produced
    /// the data it holds for it (a re-run of a lost executor's work).
    fn deliveries_may_precede_data(&self) -> bool {
        false
    }

    /// Starts an executor with small inputs offered inline (see
    /// [`Dispatcher::invoke_with_inputs`]).
    fn invoke_inline(
        &self,
        task: TaskId,
        priority: f64,
        inputs: InlineInputs,
    ) -> Result<(), InvokeError>;

    /// Every task has finished.
    fn finish(&self) -> Result<(), InvokeError>;

    /// An executor that holds claims has nothing left to run: what next.
    /// Local threads, whose cache outlives executors, wait for whichever
    /// comes first: a start queued for a worker (the caller takes it over,
    /// as its thread would run it next anyway), mail for `mailbox`, or the
    /// moment no other thread runs a task (then nothing can complete a held
    /// child). Either way the held data stays off the store while it may
    /// still be used here. Other platforms end at once.
    fn idle(&self, _mailbox: &Mailbox) -> Idle {
        Idle::End
    }
}

/// What an executor with nothing queued but claims held does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Run this start, which was waiting for a worker, with its inline inputs.
    Adopt(TaskId, InlineInputs),
    /// Tasks were delivered.
    Mail,
    /// Write what is held and end.
    End,
}

/// A [`Dispatcher`] seen as a platform without mailboxes.
pub(crate) struct Remote<'a>(pub(crate) &'a dyn Dispatcher);

impl Invoker for Remote<'_> {
    fn invoke(&self, task: TaskId, priority: f64) -> Result<(), InvokeError> {
        self.0.invoke(task, priority)
    }

    fn spare_capacity(&self) -> usize {
        self.0.spare_capacity()
    }

    fn deliver(&self, _: ExecutorId, _: TaskId) -> bool {
        false
    }
}

impl Platform for Remote<'_> {
    fn open_mailbox(&self, _: ExecutorId) -> Result<Option<Arc<Mailbox>>, InvokeError> {
        Ok(self.0.open_mailbox()?.then(|| Arc::new(Mailbox::open())))
    }

    fn collect_mail(&self, mailbox: &Mailbox) -> Result<(), InvokeError> {
        let tasks = self.0.take_mail()?;
        if !tasks.is_empty() {
            if let Some(inbox) = mailbox.0.lock().as_mut() {
                inbox.extend(tasks);
            }
        }
        Ok(())
    }

    fn close_mailbox(&self, _: ExecutorId) -> Result<Vec<Delivery>, InvokeError> {
        self.0.close_mailbox()
    }

    fn holder(&self, _: ExecutorId, origin: Option<TaskId>) -> String {
        self.0.holder(origin)
    }

    /// Waits for mail or a start to take over, as long as the dispatcher
    /// has one to offer (worker processes); a failure to look ends the wait.
    fn idle(&self, mailbox: &Mailbox) -> Idle {
        loop {
            if self.collect_mail(mailbox).is_err() {
                return Idle::End;
            }
            if mailbox.has_mail() {
                return Idle::Mail;
            }
            match self.0.wait_for_start() {
                Ok(Waited::Start(task, inputs)) => return Idle::Adopt(task, inputs),
                Ok(Waited::Nothing) => {}
                Ok(Waited::End) | Err(_) => return Idle::End,
            }
        }
    }

    fn deliver_to(&self, holder: &str, task: TaskId) -> Result<Option<bool>, InvokeError> {
        self.0.deliver(holder, task).map(Some)
    }

    fn deliveries_may_precede_data(&self) -> bool {
        true
    }

    fn invoke_inline(
        &self,
        task: TaskId,
        priority: f64,
        inputs: InlineInputs,
    ) -> Result<(), InvokeError> {
        self.0.invoke_with_inputs(task, priority, inputs)
    }

    fn finish(&self) -> Result<(), InvokeError> {
        self.0.finished()
    }
}

/// A live executor's inbox; `None` once closed.
#[derive(Default)]
pub(crate) struct Mailbox(Mutex<Option<Vec<Delivery>>>);

impl Mailbox {
    fn open() -> Self {
        Self(Mutex::new(Some(Vec::new())))
    }

    fn has_mail(&self) -> bool {
        self.0
            .lock()
            .as_ref()
            .is_some_and(|tasks| !tasks.is_empty())
    }

    /// Tasks delivered since the last call.
    pub(crate) fn take(&self) -> Vec<Delivery> {
        self.0
            .lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    // Non-negative finite floats order like their bit patterns.
    priority: u64,
    task: Reverse<TaskId>,
}

struct PoolState {
    queue: BinaryHeap<Queued>,
    /// Threads waiting for work, those in [`Platform::idle`] included.
    idle: usize,
    /// Threads in [`Platform::idle`]: their executors hold claims.
    lingering: usize,
    finished: bool,
    stalled: bool,
}

/// Starts a busy pool keeps queued for the next thread that frees up.
const RESERVE: isize = 1;

/// Local mode: executors run on a fixed set of threads that take starts from
/// one queue, highest priority first.
pub(crate) struct ThreadPool {
    threads: usize,
    state: Mutex<PoolState>,
    wake: Condvar,
    /// Idle threads minus queued starts, read without the lock.
    spare: AtomicIsize,
    mailboxes: Mutex<HashMap<ExecutorId, Arc<Mailbox>>>,
}

impl ThreadPool {
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            threads,
            state: Mutex::new(PoolState {
                queue: BinaryHeap::new(),
                idle: 0,
                lingering: 0,
                finished: false,
                stalled: false,
            }),
            wake: Condvar::new(),
            spare: AtomicIsize::new(0),
            mailboxes: Mutex::new(HashMap::new()),
        }
    }

    /// Spare capacity is idle threads plus one start kept in reserve, minus
    /// starts already queued: a thread whose executor ends then finds work at
    /// once instead of waiting for a busy executor's next task boundary.
    fn update_spare(&self, state: &PoolState) {
        self.spare.store(
            state.idle as isize + RESERVE - state.queue.len() as isize,
            Ordering::Relaxed,
        );
    }

    /// The next start for a pool thread; `None` once the run is over, or
    /// when every thread is idle with nothing queued (the run stalled).
    pub(crate) fn next(&self) -> Option<TaskId> {
        let mut state = self.state.lock();
        loop {
            if state.finished {
                return None;
            }
            if let Some(queued) = state.queue.pop() {
                self.update_spare(&state);
                return Some(queued.task.0);
            }
            if state.idle + 1 == self.threads {
                if state.lingering == 0 {
                    state.stalled = true;
                    state.finished = true;
                    drop(state);
                    self.wake.notify_all();
                    return None;
                }
                // No task runs: the lingering executors run their mail or
                // end; the last thread to get here decides on a stall.
                self.wake.notify_all();
            }
            state.idle += 1;
            self.update_spare(&state);
            self.wake.wait(&mut state);
            state.idle -= 1;
            self.update_spare(&state);
        }
    }

    /// Ends the run: every thread's `next` returns `None`.
    pub(crate) fn stop(&self) {
        self.state.lock().finished = true;
        self.wake.notify_all();
    }

    /// Whether the run ended because no thread had anything to do.
    pub(crate) fn stalled(&self) -> bool {
        self.state.lock().stalled
    }
}

impl Platform for ThreadPool {
    fn open_mailbox(&self, executor: ExecutorId) -> Result<Option<Arc<Mailbox>>, InvokeError> {
        let mailbox = Arc::new(Mailbox::open());
        self.mailboxes.lock().insert(executor, Arc::clone(&mailbox));
        Ok(Some(mailbox))
    }

    fn close_mailbox(&self, executor: ExecutorId) -> Result<Vec<Delivery>, InvokeError> {
        let mailbox = self.mailboxes.lock().remove(&executor);
        Ok(mailbox.and_then(|m| m.0.lock().take()).unwrap_or_default())
    }

    fn finish(&self) -> Result<(), InvokeError> {
        self.stop();
        Ok(())
    }

    /// Waits like an idle thread (counted as one, so that starts keep
    /// coming and a stall is still seen), for a start, mail or the end.
    fn idle(&self, mailbox: &Mailbox) -> Idle {
        let mut state = self.state.lock();
        loop {
            if state.finished {
                return Idle::End;
            }
            if let Some(queued) = state.queue.pop() {
                self.update_spare(&state);
                return Idle::Adopt(queued.task.0, Vec::new());
            }
            // Deliverers notify under this lock: no mail is missed.
            if mailbox.has_mail() {
                return Idle::Mail;
            }
            if state.idle + 1 == self.threads {
                return Idle::End;
            }
            state.idle += 1;
            state.lingering += 1;
            self.update_spare(&state);
            self.wake.wait(&mut state);
            state.idle -= 1;
            state.lingering -= 1;
            self.update_spare(&state);
        }
    }

    /// Local executors share this process's memory: nothing to carry.
    fn invoke_inline(
        &self,
        task: TaskId,
        priority: f64,
        _: InlineInputs,
    ) -> Result<(), InvokeError> {
        self.invoke(task, priority)
    }
}

impl Invoker for ThreadPool {
    fn invoke(&self, task: TaskId, priority: f64) -> Result<(), InvokeError> {
        let mut state = self.state.lock();
        state.queue.push(Queued {
            priority: priority.max(0.0).to_bits(),
            task: Reverse(task),
        });
        self.update_spare(&state);
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    fn spare_capacity(&self) -> usize {
        self.spare.load(Ordering::Relaxed).max(0) as usize
    }

    fn deliver(&self, executor: ExecutorId, task: TaskId) -> bool {
        let Some(mailbox) = self.mailboxes.lock().get(&executor).cloned() else {
            return false;
        };
        let mut inbox = mailbox.0.lock();
        match inbox.as_mut() {
            Some(tasks) => {
                tasks.push((task, None));
                drop(inbox);
                // Its executor may be waiting in `idle`.
                let _state = self.state.lock();
                self.wake.notify_all();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_come_out_by_priority_and_mailboxes_close() {
        let pool = ThreadPool::new(2);
        pool.invoke(TaskId(1), 1.0).unwrap();
        pool.invoke(TaskId(2), 5.0).unwrap();
        assert_eq!(pool.next(), Some(TaskId(2)));
        assert_eq!(pool.next(), Some(TaskId(1)));
        // Both threads busy: one start may wait in reserve.
        assert_eq!(pool.spare_capacity(), 1);

        let mailbox = pool
            .open_mailbox(ExecutorId(3))
            .ok()
            .flatten()
            .expect("local mailboxes");
        assert!(pool.deliver(ExecutorId(3), TaskId(7)));
        assert_eq!(mailbox.take(), vec![(TaskId(7), None)]);
        assert!(pool.deliver(ExecutorId(3), TaskId(8)));
        assert_eq!(
            pool.close_mailbox(ExecutorId(3)).ok(),
            Some(vec![(TaskId(8), None)])
        );
        assert!(!pool.deliver(ExecutorId(3), TaskId(9)));
        assert!(!pool.deliver(ExecutorId(4), TaskId(9)));
        pool.stop();
        assert_eq!(pool.next(), None);
        assert!(!pool.stalled());
    }

    #[test]
    fn an_executor_holding_claims_waits_for_a_start_or_mail_while_another_thread_runs() {
        let open = |pool: &ThreadPool, executor| {
            pool.open_mailbox(ExecutorId(executor))
                .ok()
                .flatten()
                .expect("local mailboxes")
        };
        let pool = ThreadPool::new(2);
        let mailbox = open(&pool, 1);
        // The other thread is running (not idle in the pool) throughout: the
        // lingering thread wakes for a start or for mail, in either order.
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| pool.idle(&mailbox));
            pool.invoke(TaskId(5), 1.0).unwrap();
            assert_eq!(
                waiting.join().ok(),
                Some(Idle::Adopt(TaskId(5), Vec::new()))
            );
            let waiting = scope.spawn(|| pool.idle(&mailbox));
            assert!(pool.deliver(ExecutorId(1), TaskId(6)));
            assert_eq!(waiting.join().ok(), Some(Idle::Mail));
        });
        assert_eq!(mailbox.take(), vec![(TaskId(6), None)]);
        // The other thread goes idle with nothing queued: no task runs, so
        // nothing can be delivered; the lingering thread ends and the pool
        // sees the stall once both wait.
        std::thread::scope(|scope| {
            let lingering = scope.spawn(|| {
                let idle = pool.idle(&mailbox);
                (idle, pool.next())
            });
            assert_eq!(pool.next(), None);
            assert_eq!(lingering.join().ok(), Some((Idle::End, None)));
        });
        assert!(pool.stalled());
        // One thread: nobody else could complete a held child.
        let single = ThreadPool::new(1);
        assert_eq!(single.idle(&open(&single, 2)), Idle::End);
    }

    #[test]
    fn a_pool_with_every_thread_idle_and_nothing_queued_has_stalled() {
        let pool = ThreadPool::new(1);
        assert_eq!(pool.next(), None);
        assert!(pool.stalled());
    }
}
