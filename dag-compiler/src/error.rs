use crate::{DataId, TaskId};

/// Why a set of task declarations is not a valid graph, or could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DagError {
    /// The dependencies form a cycle; `task` lies on it.
    #[error("the task graph has a cycle through task {task} ({label})")]
    Cycle {
        /// A task on the cycle.
        task: TaskId,
        /// Its operation's label.
        label: String,
    },
    /// Two tasks declare that they write the same data item.
    #[error("data item {data} is written by task {first} and again by task {second}")]
    WrittenTwice {
        /// The item.
        data: DataId,
        /// The first writer.
        first: TaskId,
        /// The second writer.
        second: TaskId,
    },
    /// A task writes an item that was declared as an input of the graph.
    #[error("task {task} writes data item {data}, which is an input of the graph")]
    InputWritten {
        /// The input item.
        data: DataId,
        /// The task that writes it.
        task: TaskId,
    },
    /// A task reads an item that is neither an input nor written by any task.
    #[error("task {task} reads data item {data}, which no task writes and is not an input")]
    Unwritten {
        /// The item.
        data: DataId,
        /// A task reading it.
        task: TaskId,
    },
    /// An item requested as an output of the graph is never written.
    #[error("data item {data} is an output of the graph but no task writes it")]
    OutputUnwritten {
        /// The item.
        data: DataId,
    },
    /// A task refers to an item that was never declared.
    #[error("task {task} refers to data item {data}, which was never declared")]
    UnknownData {
        /// The undeclared item.
        data: DataId,
        /// The task that refers to it.
        task: TaskId,
    },
    /// A task's cost estimate is negative, infinite or NaN.
    #[error("task {task} has cost {cost}, which is not a finite non-negative number")]
    BadCost {
        /// The task.
        task: TaskId,
        /// Its cost.
        cost: f64,
    },
    /// More tasks, items or references than 32-bit ids can address.
    #[error("the graph is too large: more than {limit} {what}")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// An encoded graph could not be decoded.
    #[error("cannot decode a task graph from {format}")]
    Decode {
        /// `binary` or `JSON`.
        format: &'static str,
        /// What the decoder reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A graph could not be encoded.
    #[error("cannot encode a task graph as {format}")]
    Encode {
        /// `binary` or `JSON`.
        format: &'static str,
        /// What the encoder reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A name that is none of a fixed set of choices (a scheduler, a backend, a
/// method), as parsed from a command line, a file or a job's spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}`: expected {expected}")]
pub struct UnknownName {
    /// What was being named (`scheduler`, `backend`, …).
    pub what: &'static str,
    /// The name given.
    pub given: String,
    /// The names accepted, for the message.
    pub expected: &'static str,
}
