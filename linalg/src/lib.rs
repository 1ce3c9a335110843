//! Tiled dense linear algebra for wukong: [`BlockMatrix`], tile kernels behind
//! one backend trait, and algorithms that compile into task graphs.
//!
//! This crate knows math, not execution: an algorithm returns a plan (a
//! [`Dag`](wukong_dag::Dag) of [`TileOp`]s and where each tile lives in it), and
//! any executor runs it by calling [`TileOp::execute`] on each task.
//!
//! ```
//! use std::sync::Arc;
//! use wukong_linalg::{BackendKind, BlockMatrix, cholesky_plan};
//!
//! let a = BlockMatrix::random_spd(50, 16, 7)?;
//! let plan = cholesky_plan(a.layout())?;
//! let backend = BackendKind::Faer.kernels()?;
//! // Run the graph in topological order on one thread.
//! let mut values = std::collections::HashMap::new();
//! for (index, item) in plan.a.items.iter().enumerate() {
//!     if let Some(item) = item {
//!         values.insert(*item, a.tiles()[index].clone());
//!     }
//! }
//! for &task in plan.dag.topological_order() {
//!     let inputs = plan.dag.reads(task).iter().map(|d| values[d].clone()).collect();
//!     let outputs = plan.dag.op(task).execute(backend, inputs)?;
//!     for (item, tile) in plan.dag.writes(task).iter().zip(outputs) {
//!         values.insert(*item, Arc::new(tile));
//!     }
//! }
//! let l00 = &values[&plan.l.get(0, 0).unwrap()];
//! assert!(l00[[0, 0]] > 0.0);
//! # Ok::<(), wukong_linalg::LinalgError>(())
//! ```

pub mod algorithms;
mod block;
mod error;
pub mod flops;
pub mod kernels;
mod layout;
mod lazy;
pub mod npy;
mod ops;
mod rng;
pub mod tile;

pub use algorithms::cholesky::{CholeskyPlan, cholesky_plan, cholesky_task_count};
pub use algorithms::gemm::{GemmPlan, gemm_plan};
pub use algorithms::qr::{Panel, QrPlan, qr_plan, qr_plan_with};
pub use algorithms::solve::{SolvePlan, cholesky_solve_plan, lstsq_plan, triangular_solve_plan};
pub use algorithms::svd::{
    RandomizedSvd, SvdPlan, V, full_svd_plan, full_svd_plan_with, randomized_svd_plan,
    tall_svd_plan,
};
pub use algorithms::tsqr::{Tree, TsqrPlan, tsqr_plan};
pub use algorithms::{TileMap, execute_serial};
pub use block::BlockMatrix;
pub use error::LinalgError;
pub use kernels::{BackendKind, Diagonal, Side, SvdParts, TileBackend, Transpose, Triangle};
pub use layout::TileLayout;
pub use lazy::{Composed, Graph, Lazy};
pub use ops::{QrMethod, TileOp, cholesky_qr2};
pub use tile::Tile;
