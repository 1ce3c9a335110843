//! Runs wukong task graphs.
//!
//! The executor knows execution, not math: it is generic over the operation
//! type of a [`Dag`](wukong_dag::Dag) and over a [`Kernels`] implementation that
//! turns an operation and its input values into output values.
//!
//! [`LocalExecutor`] runs a graph on a fixed number of threads in this process,
//! against an in-memory [`SlotStore`](wukong_storage::SlotStore): a task runs as
//! soon as its last parent has finished, highest critical-path priority first,
//! and each intermediate value is dropped once its last reader has run.
//!
//! ```
//! use std::sync::Arc;
//! use wukong_dag::{DagBuilder, Operation};
//! use wukong_executor::{Kernels, LocalExecutor, RunOptions};
//!
//! #[derive(Debug)]
//! struct Sum;
//! impl Operation for Sum {
//!     fn cost(&self) -> f64 { 1.0 }
//!     fn label(&self) -> String { "sum".into() }
//! }
//! struct Adder;
//! impl Kernels<Sum> for Adder {
//!     type Value = i64;
//!     type Error = std::convert::Infallible;
//!     fn execute(&self, _: &Sum, inputs: Vec<Arc<i64>>) -> Result<Vec<i64>, Self::Error> {
//!         Ok(vec![inputs.iter().map(|v| **v).sum()])
//!     }
//! }
//!
//! let mut b = DagBuilder::new();
//! let (x, y, z) = (b.input(8), b.input(8), b.data(8));
//! b.task(Sum, &[x, y], &[z]);
//! b.output(z);
//! let dag = b.build().unwrap();
//! let run = LocalExecutor::new(2)
//!     .run(&dag, &Adder, [(x, Arc::new(2)), (y, Arc::new(40))], &RunOptions::default())
//!     .unwrap();
//! assert_eq!(*run.outputs[&z], 42);
//! ```

mod cache;
mod cost;
mod engine;
mod error;
mod gantt;
#[cfg(feature = "lambda")]
pub mod lambda;
mod local;
mod platform;
mod pool;
pub mod remote;
mod report;

pub use cost::{CostEstimate, PRICES, Prices};
pub use engine::{Engine, EngineConfig, Scheduler, Stores};
pub(crate) use engine::{ExecutorReport, ExecutorSlot, WorkerCache, data_key};
pub use error::ExecError;
pub use local::LocalExecutor;
pub use platform::{
    Delivered, Delivery, ExecutorId, Holder, Idle, InlineInputs, InvokeError, Mailbox, NotAHolder,
    Platform,
};
pub use report::{ExecutorRecord, IoReport, RunReport, TaskRecord};
pub use wukong_storage::{Clock, SystemClock};

use std::collections::HashMap;
use std::sync::Arc;

use wukong_dag::DataId;

/// The computations behind a graph's operations.
pub trait Kernels<Op>: Sync {
    /// The values that flow along the graph's edges (tiles, for linear algebra).
    type Value: Send + Sync + 'static;
    /// Why a computation failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs one operation on its inputs, given in the order the task declared
    /// its reads, and returns its outputs in the order it declared its writes.
    ///
    /// An input whose `Arc` is unique is no longer needed by anyone else, so the
    /// kernel may take it over (`Arc::try_unwrap`) and update it in place.
    fn execute(
        &self,
        op: &Op,
        inputs: Vec<Arc<Self::Value>>,
    ) -> Result<Vec<Self::Value>, Self::Error>;
}

/// How far a run has come, handed to [`RunOptions::progress`].
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Tasks finished.
    pub done: usize,
    /// Tasks in the graph.
    pub total: usize,
}

/// Options for one run.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Called after each finished task, from the thread that ran it.
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

/// What a successful run produced.
#[derive(Debug)]
pub struct RunOutcome<V> {
    /// The graph's outputs.
    pub outputs: HashMap<DataId, Arc<V>>,
    /// Timings of the run.
    pub report: RunReport,
}
