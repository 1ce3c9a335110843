//! Dense linear algebra as task graphs, run the Wukong way.
//!
//! Tiled algorithms (GEMM, Cholesky, TSQR, tall-skinny and randomized SVD,
//! triangular, Cholesky and least-squares solves) compile into task graphs whose tasks are tile kernels; an executor runs the
//! graph. The embedded default needs no set-up: threads of this process and an
//! in-memory store.
//!
//! ```
//! use wukong::{BlockMatrix, Runtime};
//!
//! let runtime = Runtime::new().with_threads(2);
//! // A 300×300 symmetric positive-definite matrix in 64×64 tiles (ragged edges).
//! let a = BlockMatrix::random_spd(300, 64, 42)?;
//! let l = runtime.cholesky(&a)?;
//! let (l, a) = (l.to_array(), a.to_array());
//! let residual = &a - &l.dot(&l.t());
//! assert!(residual.iter().all(|r| r.abs() < 1e-9));
//!
//! // C = A·B for any conformable shapes, in tiles of the same size.
//! let x = BlockMatrix::random(200, 70, 64, 64, 1)?;
//! let y = BlockMatrix::random(70, 130, 64, 64, 2)?;
//! let c = runtime.gemm(&x, &y)?;
//! assert_eq!(c.shape(), (200, 130));
//!
//! // A = Q·R of a tall-skinny matrix held as one column of 128-row tiles.
//! let tall = BlockMatrix::random(1000, 20, 128, 20, 3)?;
//! let (q, r) = runtime.tsqr(&tall)?;
//! let residual = &tall.to_array() - &q.to_array().dot(&r);
//! assert!(residual.iter().all(|x| x.abs() < 1e-12));
//! # Ok::<(), wukong::Error>(())
//! ```

mod alloc;
mod decompose;
pub mod memory;
mod process;
mod runtime;
pub mod workload;

pub use alloc::LargePages;
pub use decompose::{QrFactors, Solved, SvdFactors, TiledQr};
pub use process::prepare_process;
pub use runtime::{Computed, Error, Runtime, TileKernels, TileRegistry};
pub use wukong_dag as dag;
pub use wukong_executor as executor;
/// Executors in worker processes and Lambda functions.
pub use wukong_executor::remote;
pub use wukong_executor::{RunReport, Scheduler};
pub use wukong_linalg as linalg;
pub use wukong_linalg::{
    BackendKind, BlockMatrix, Graph, Lazy, LinalgError, Panel, QrMethod, RandomizedSvd, Tile,
    TileLayout, Transpose, Tree, Triangle,
};
pub use wukong_storage as storage;

/// The README's Rust examples run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
