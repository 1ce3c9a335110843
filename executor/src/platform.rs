//! Where executors live: the one trait every mode implements.
//!
//! The engine runs the same executor loop on every platform. What differs is
//! how a new executor starts ([`Platform::invoke`]), how a running one is told
//! of a task delivered to it ([`Platform::deliver`], its [`Mailbox`]), what it
//! does when it holds claims and has nothing to run ([`Platform::idle`]), and
//! whose clock it reads. Local threads implement it with a pool in this
//! process; worker processes and Lambda functions over a
//! [`Broker`](wukong_storage::Broker) and the Lambda API; a simulator with a
//! virtual clock can implement the same calls.

use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use wukong_dag::{DataId, TaskId};
use wukong_storage::{Clock, SystemClock};

/// An executor's number within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ExecutorId(pub u32);

impl std::fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// Why a platform call failed: an executor could not start, or a mailbox
/// could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot start an executor on {platform}: {detail}")]
pub struct InvokeError {
    /// `threads`, `processes`, `lambda` or the broker's name.
    pub platform: &'static str,
    /// What the platform reported.
    pub detail: String,
}

/// Encoded inputs offered to travel with an invocation.
pub type InlineInputs = Vec<(DataId, Vec<u8>)>;

/// A delivered task, with the start taken over by its executor (see
/// [`Idle::Adopt`]) whose mailbox it came to; `None` for the executor's own.
pub type Delivery = (TaskId, Option<TaskId>);

/// Who holds a fan-in child's claim: the name a claim is recorded under in
/// the coordinator, and the address a completed child is delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A running executor of this process (`e7`).
    Executor(ExecutorId),
    /// Whoever runs the work of the start at this task (`s7`): its executor,
    /// or the one that took the start over after it was lost.
    Start(TaskId),
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Executor(executor) => write!(f, "{executor}"),
            Self::Start(task) => write!(f, "s{}", task.0),
        }
    }
}

/// A claim holder's name that is neither `e<number>` nor `s<number>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a claim holder (e<executor> or s<start task>)")]
pub struct NotAHolder(pub String);

impl FromStr for Holder {
    type Err = NotAHolder;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let number = |rest: &str| rest.parse::<u32>().ok();
        match name.split_at_checked(1) {
            Some(("e", rest)) => number(rest).map(|n| Self::Executor(ExecutorId(n))),
            Some(("s", rest)) => number(rest).map(|n| Self::Start(TaskId(n))),
            _ => None,
        }
        .ok_or_else(|| NotAHolder(name.to_owned()))
    }
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The holder's mailbox took the task: it will run there.
    Yes,
    /// The holder has ended, after writing what it held: run the task here.
    Ended,
    /// The holder is not one of this platform's (a corrupt claim).
    Unknown,
}

/// What an executor with nothing queued but claims held does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Idle {
    /// Run this start (one waiting for a worker, or an invocation taken
    /// over), with its inline inputs.
    Adopt(TaskId, InlineInputs),
    /// Tasks were delivered.
    Mail,
    /// Write what is held and end.
    End,
}

/// What the engine needs from where its executors live.
pub trait Platform: Send + Sync {
    /// Starts a new executor whose first task is `task` (ready to run: its
    /// inputs are in the store). `priority` orders waiting starts where the
    /// platform queues them; `inputs` are small inputs of `task` (encoded,
    /// also in the store) offered to travel with the invocation, which a
    /// platform may ignore.
    fn invoke(&self, task: TaskId, priority: f64, inputs: InlineInputs) -> Result<(), InvokeError>;

    /// How many more executors could start now without waiting for a CPU:
    /// idle threads in local mode, the concurrency left on elastic platforms.
    fn spare_capacity(&self) -> usize;

    /// Opens a mailbox for a new executor; `None` where tasks cannot be
    /// delivered to a running executor (then nobody holds data under a claim).
    fn open_mailbox(&self, executor: ExecutorId) -> Result<Option<Arc<Mailbox>>, InvokeError>;

    /// Moves what was delivered elsewhere (another process) into `mailbox`.
    fn collect_mail(&self, _mailbox: &Mailbox) -> Result<(), InvokeError> {
        Ok(())
    }

    /// Closes the executor's mailbox and returns what arrived since the last
    /// collection; later deliveries get [`Delivered::Ended`].
    fn close_mailbox(&self, executor: ExecutorId) -> Result<Vec<Delivery>, InvokeError>;

    /// The name `executor` claims children under for the work of `origin`:
    /// its own start (`None`) or a start it took over. Whoever runs that
    /// start's work after it is lost must use the same name.
    fn holder(&self, executor: ExecutorId, origin: Option<TaskId>) -> Holder;

    /// Delivers `task` to the executor that claims under `holder`.
    fn deliver(&self, holder: Holder, task: TaskId) -> Result<Delivered, InvokeError>;

    /// Whether a delivered task may arrive before this executor has produced
    /// the data it holds for it (a re-run of a lost executor's work).
    fn deliveries_may_precede_data(&self) -> bool {
        false
    }

    /// An executor that holds claims has nothing left to run: what next.
    /// Either way the held data stays off the store while it may still be
    /// used here. The default ends at once.
    fn idle(&self, _mailbox: &Mailbox) -> Idle {
        Idle::End
    }

    /// Every task has finished. May be called again by a duplicated
    /// executor; the platform must not mind.
    fn finish(&self) -> Result<(), InvokeError>;

    /// The clock that task records and polling intervals read.
    fn clock(&self) -> &dyn Clock {
        &SystemClock
    }
}

/// A live executor's inbox; closed once its executor has written what it held.
#[derive(Debug)]
pub struct Mailbox(Mutex<Option<Vec<Delivery>>>);

impl Default for Mailbox {
    fn default() -> Self {
        Self::open()
    }
}

impl Mailbox {
    /// An open, empty mailbox.
    pub fn open() -> Self {
        Self(Mutex::new(Some(Vec::new())))
    }

    /// Adds `tasks`; `false` (and nothing added) if the mailbox is closed.
    pub fn deliver(&self, tasks: impl IntoIterator<Item = Delivery>) -> bool {
        match self.0.lock().as_mut() {
            Some(inbox) => {
                inbox.extend(tasks);
                true
            }
            None => false,
        }
    }

    /// Whether tasks wait in the open mailbox.
    pub fn has_mail(&self) -> bool {
        self.0
            .lock()
            .as_ref()
            .is_some_and(|tasks| !tasks.is_empty())
    }

    /// Tasks delivered since the last call.
    pub fn take(&self) -> Vec<Delivery> {
        self.0
            .lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Closes the mailbox and returns what it still held.
    pub fn close(&self) -> Vec<Delivery> {
        self.0.lock().take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_print_and_parse_back() {
        for holder in [Holder::Executor(ExecutorId(7)), Holder::Start(TaskId(12))] {
            assert_eq!(holder.to_string().parse::<Holder>(), Ok(holder));
        }
        assert_eq!(Holder::Start(TaskId(3)).to_string(), "s3");
        for bad in ["", "e", "x3", "s-1", "e3x", "ś3"] {
            assert_eq!(bad.parse::<Holder>(), Err(NotAHolder(bad.into())));
        }
    }

    #[test]
    fn a_closed_mailbox_takes_nothing() {
        let mailbox = Mailbox::open();
        assert!(mailbox.deliver([(TaskId(1), None)]));
        assert!(mailbox.has_mail());
        assert_eq!(mailbox.close(), vec![(TaskId(1), None)]);
        assert!(!mailbox.deliver([(TaskId(2), None)]));
        assert!(!mailbox.has_mail());
        assert!(mailbox.take().is_empty());
    }
}
