//! Task-graph IR for tiled algorithms.
//!
//! A [`Dag`] is a set of tasks, each an operation of a caller-chosen type that
//! *declares* the data items (tile versions) it reads and writes. Edges are never
//! written by hand: a task depends on the task that writes each item it reads.
//! Every item is written at most once (single assignment), so a task can be
//! re-executed safely and the graph is the same wherever it runs.
//!
//! [`DagBuilder::build`] validates the declarations (a cycle, an item written
//! twice, a read of an item nobody writes) and computes fan-in, fan-out, a
//! topological order and critical-path priorities. A [`ClusterPlan`] decides
//! which children stay on the executor of their parent. A `Dag` can be encoded in a
//! compact binary form or JSON, and drawn as Graphviz DOT.
//!
//! ```
//! use wukong_dag::{DagBuilder, Operation};
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! struct Add;
//! impl Operation for Add {
//!     fn cost(&self) -> f64 { 1.0 }
//!     fn label(&self) -> String { "add".into() }
//! }
//!
//! let mut b = DagBuilder::new();
//! let x = b.input(8);
//! let y = b.input(8);
//! let sum = b.data(8);
//! let twice = b.data(8);
//! let first = b.task(Add, &[x, y], &[sum]);
//! let second = b.task(Add, &[sum, sum], &[twice]);
//! b.output(twice);
//! let dag = b.build().unwrap();
//! assert_eq!(dag.parents(second), &[first]);
//! assert_eq!(dag.fan_in(second), 1);
//! assert_eq!(dag.topological_order(), &[first, second]);
//! assert!(dag.priority(first) > dag.priority(second));
//! ```

mod builder;
mod cluster;
mod dag;
mod dot;
mod encode;
mod error;
mod ids;

pub use builder::DagBuilder;
pub use cluster::{ClusterParams, ClusterPlan, Placement, StayReason};
pub use dag::{Dag, DataInfo, DataRole};
pub use error::{DagError, UnknownName};
pub use ids::{DataId, TaskId};

/// The operation carried by a task.
///
/// The compiler knows nothing of what an operation computes; it asks only for
/// an estimate of its cost (for critical-path priorities) and a short label
/// (for DOT output and error messages).
pub trait Operation {
    /// Estimated cost of running the task, in any unit that is consistent
    /// across the operations of one graph (floating-point operations for linear
    /// algebra). Must be finite and non-negative.
    fn cost(&self) -> f64;

    /// A short human-readable name, e.g. `potrf(2,2)`.
    fn label(&self) -> String;
}
