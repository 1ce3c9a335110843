//! Local mode's platform: executors run on a fixed set of threads of this
//! process, which take starts from one queue, highest priority first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use parking_lot::{Condvar, Mutex};
use wukong_dag::TaskId;

use crate::platform::{
    Delivered, Delivery, ExecutorId, Holder, Idle, InlineInputs, InvokeError, Mailbox, Platform,
};

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
    /// Local executors share this process's memory: inline inputs are not needed.
    fn invoke(&self, task: TaskId, priority: f64, _: InlineInputs) -> Result<(), InvokeError> {
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

    fn open_mailbox(&self, executor: ExecutorId) -> Result<Option<Arc<Mailbox>>, InvokeError> {
        let mailbox = Arc::new(Mailbox::open());
        self.mailboxes.lock().insert(executor, Arc::clone(&mailbox));
        Ok(Some(mailbox))
    }

    fn close_mailbox(&self, executor: ExecutorId) -> Result<Vec<Delivery>, InvokeError> {
        let mailbox = self.mailboxes.lock().remove(&executor);
        Ok(mailbox.map(|m| m.close()).unwrap_or_default())
    }

    fn holder(&self, executor: ExecutorId, _: Option<TaskId>) -> Holder {
        Holder::Executor(executor)
    }

    fn deliver(&self, holder: Holder, task: TaskId) -> Result<Delivered, InvokeError> {
        let Holder::Executor(executor) = holder else {
            return Ok(Delivered::Unknown);
        };
        let Some(mailbox) = self.mailboxes.lock().get(&executor).cloned() else {
            return Ok(Delivered::Ended);
        };
        if !mailbox.deliver([(task, None)]) {
            return Ok(Delivered::Ended);
        }
        // Its executor may be waiting in `idle`.
        let _state = self.state.lock();
        self.wake.notify_all();
        Ok(Delivered::Yes)
    }

    /// Local threads, whose cache outlives executors, wait for whichever
    /// comes first: a start queued for a worker (the caller takes it over, as
    /// its thread would run it next anyway), mail for `mailbox`, or the
    /// moment no other thread runs a task (then nothing can complete a held
    /// child). The waiting thread counts as idle, so that starts keep coming
    /// and a stall is still seen.
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

    fn finish(&self) -> Result<(), InvokeError> {
        self.stop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_come_out_by_priority_and_mailboxes_close() {
        let pool = ThreadPool::new(2);
        pool.invoke(TaskId(1), 1.0, Vec::new()).unwrap();
        pool.invoke(TaskId(2), 5.0, Vec::new()).unwrap();
        assert_eq!(pool.next(), Some(TaskId(2)));
        assert_eq!(pool.next(), Some(TaskId(1)));
        // Both threads busy: one start may wait in reserve.
        assert_eq!(pool.spare_capacity(), 1);

        let mailbox = pool
            .open_mailbox(ExecutorId(3))
            .ok()
            .flatten()
            .expect("local mailboxes");
        let deliver = |executor, task| {
            pool.deliver(Holder::Executor(ExecutorId(executor)), TaskId(task))
                .ok()
        };
        assert_eq!(deliver(3, 7), Some(Delivered::Yes));
        assert_eq!(mailbox.take(), vec![(TaskId(7), None)]);
        assert_eq!(deliver(3, 8), Some(Delivered::Yes));
        assert_eq!(
            pool.close_mailbox(ExecutorId(3)).ok(),
            Some(vec![(TaskId(8), None)])
        );
        assert_eq!(deliver(3, 9), Some(Delivered::Ended));
        assert_eq!(deliver(4, 9), Some(Delivered::Ended));
        assert_eq!(
            pool.deliver(Holder::Start(TaskId(3)), TaskId(9)).ok(),
            Some(Delivered::Unknown)
        );
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
            pool.invoke(TaskId(5), 1.0, Vec::new()).unwrap();
            assert_eq!(
                waiting.join().ok(),
                Some(Idle::Adopt(TaskId(5), Vec::new()))
            );
            let waiting = scope.spawn(|| pool.idle(&mailbox));
            assert_eq!(
                pool.deliver(Holder::Executor(ExecutorId(1)), TaskId(6))
                    .ok(),
                Some(Delivered::Yes)
            );
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
