use wukong_dag::{DataId, TaskId};
use wukong_storage::StorageError;

use crate::InvokeError;

/// Why a run failed. `E` is the kernels' error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError<E: std::error::Error + 'static> {
    /// The run was asked for zero threads.
    #[error("an executor needs at least one thread")]
    NoThreads,
    /// An input of the graph was not provided.
    #[error("input {data} of the task graph was not provided")]
    MissingInput {
        /// The missing input.
        data: DataId,
    },
    /// A value was provided for an item that is not an input of the graph.
    #[error("a value was provided for {data}, which is not an input of the task graph")]
    NotAnInput {
        /// The item.
        data: DataId,
    },
    /// A kernel reported an error.
    #[error("task {task} ({label}) failed: {source}")]
    Task {
        /// The failing task.
        task: TaskId,
        /// Its operation's label.
        label: String,
        /// The kernel's error.
        #[source]
        source: E,
    },
    /// A kernel panicked; the run stopped instead of hanging.
    #[error("task {task} ({label}) panicked: {message}")]
    Panicked {
        /// The failing task.
        task: TaskId,
        /// Its operation's label.
        label: String,
        /// The panic message.
        message: String,
    },
    /// A kernel returned a different number of outputs than the task declared.
    #[error("task {task} ({label}) returned {got} outputs but declares {expected}")]
    WrongOutputCount {
        /// The task.
        task: TaskId,
        /// Its operation's label.
        label: String,
        /// Declared writes.
        expected: usize,
        /// Values returned.
        got: usize,
    },
    /// The store refused an operation: a bug in scheduling, reported rather than hidden.
    #[error("store error{}: {source}", while_running(task))]
    Store {
        /// The task it happened in; `None` outside any task (staging the
        /// inputs, starting the run).
        task: Option<TaskId>,
        /// The store's error.
        #[source]
        source: StorageError,
    },
    /// An executor could not be started.
    #[error("{} could not be handed to a new executor: {source}", task.map_or_else(|| "a task".to_owned(), |t| format!("task {t}")))]
    Invoke {
        /// The task the new executor was to start with; `None` where the
        /// platform failed outside any one task (its mailboxes).
        task: Option<TaskId>,
        /// The platform's error.
        #[source]
        source: InvokeError,
    },
    /// Every executor finished but some tasks never became ready: a bug in a
    /// scheduler or a store that lost an arrival, reported instead of hanging.
    #[error("the run stalled: {done} of {total} tasks ran and no executor is left to run the rest")]
    Stalled {
        /// Tasks that ran.
        done: usize,
        /// Tasks in the graph.
        total: usize,
    },
    /// An executor was asked to start at a task the graph does not have.
    #[error("task {task} does not exist: the graph has {tasks} tasks")]
    NoSuchTask {
        /// The task asked for.
        task: TaskId,
        /// Tasks in the graph.
        tasks: usize,
    },
    /// Executors in other processes or functions failed, or could not be
    /// reached (process and Lambda modes).
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    /// The coordinator named a claim holder that is no executor of this run.
    #[error("the claim on task {child} names {holder:?}, which is not an executor of this run")]
    BadClaim {
        /// The claimed task.
        child: TaskId,
        /// What the coordinator answered.
        holder: String,
    },
}

/// " while running task t5", or nothing outside any task.
fn while_running(task: &Option<TaskId>) -> String {
    task.map(|t| format!(" while running task {t}"))
        .unwrap_or_default()
}
