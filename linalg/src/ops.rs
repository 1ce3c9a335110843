use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wukong_dag::Operation;

use crate::LinalgError;
use crate::kernels::{Diagonal, Side, TileBackend, Transpose, Triangle};
use crate::tile::{self, Tile};

/// One tile operation of a tiled algorithm. Each writes one tile; the inputs it
/// reads, in order, are listed with each variant. Dimensions are carried for the
/// cost estimate, coordinates for labels and error messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TileOp {
    /// `C' = α·op(A)·op(B) + β·C`; reads `[A, B, C]`, or `[A, B]` when
    /// `accumulate` is false (then `C` starts from zero).
    Gemm {
        /// op(A).
        trans_a: Transpose,
        /// op(B).
        trans_b: Transpose,
        /// α.
        alpha: f64,
        /// β (ignored without `accumulate`).
        beta: f64,
        /// Whether a `C` tile is read.
        accumulate: bool,
        /// `[m, n, k]` of the product.
        dims: [u32; 3],
        /// `[row, col, step]` of the output tile.
        at: [u32; 3],
    },
    /// `C' = α·A·Aᵀ + β·C` on the lower triangle; reads `[A, C]`.
    Syrk {
        /// α.
        alpha: f64,
        /// β.
        beta: f64,
        /// `[n, k]`.
        dims: [u32; 2],
        /// `[tile, step]` of the diagonal output tile.
        at: [u32; 2],
    },
    /// `X = α·B·op(A)⁻¹` (right) or `op(A)⁻¹·α·B` (left) with `A` triangular;
    /// reads `[A, B]`.
    Trsm {
        /// Side of `A`.
        side: Side,
        /// Triangle of `A` holding the data.
        triangle: Triangle,
        /// op(A).
        trans: Transpose,
        /// Unit or stored diagonal.
        diagonal: Diagonal,
        /// α.
        alpha: f64,
        /// `[rows, cols]` of `B`.
        dims: [u32; 2],
        /// `[row, col]` of the output tile.
        at: [u32; 2],
    },
    /// Lower Cholesky factor of a diagonal tile; reads `[A]`.
    Potrf {
        /// Order of the tile.
        n: u32,
        /// Index of the diagonal tile.
        tile: u32,
        /// First row of the tile in the whole matrix.
        row: u64,
    },
}

impl Operation for TileOp {
    fn cost(&self) -> f64 {
        match *self {
            TileOp::Gemm {
                dims: [m, n, k], ..
            } => 2.0 * f64::from(m) * f64::from(n) * f64::from(k),
            TileOp::Syrk { dims: [n, k], .. } => f64::from(n) * f64::from(n + 1) * f64::from(k),
            TileOp::Trsm {
                side, dims: [m, n], ..
            } => {
                let (order, other) = match side {
                    Side::Left => (f64::from(m), f64::from(n)),
                    Side::Right => (f64::from(n), f64::from(m)),
                };
                order * order * other
            }
            TileOp::Potrf { n, .. } => f64::from(n).powi(3) / 3.0,
        }
    }

    fn label(&self) -> String {
        match self {
            TileOp::Gemm { at: [i, j, k], .. } => format!("gemm({i},{j})@{k}"),
            TileOp::Syrk { at: [i, k], .. } => format!("syrk({i},{i})@{k}"),
            TileOp::Trsm { at: [i, j], .. } => format!("trsm({i},{j})"),
            TileOp::Potrf { tile, .. } => format!("potrf({tile},{tile})"),
        }
    }
}

/// The tile itself when nobody else holds it (no copy), else a copy.
fn take(tile: Arc<Tile>) -> Tile {
    Arc::try_unwrap(tile).unwrap_or_else(|shared| tile::to_column_major(shared.view()))
}

fn expect(
    operation: &'static str,
    inputs: &[Arc<Tile>],
    expected: usize,
) -> Result<(), LinalgError> {
    if inputs.len() != expected {
        return Err(LinalgError::WrongInputCount {
            operation,
            expected,
            got: inputs.len(),
        });
    }
    Ok(())
}

impl TileOp {
    /// Runs the operation on its input tiles and returns the tile it writes.
    pub fn execute(
        &self,
        backend: &dyn TileBackend,
        mut inputs: Vec<Arc<Tile>>,
    ) -> Result<Tile, LinalgError> {
        match *self {
            TileOp::Gemm {
                trans_a,
                trans_b,
                alpha,
                beta,
                accumulate,
                dims: [m, n, _],
                ..
            } => {
                expect("gemm", &inputs, if accumulate { 3 } else { 2 })?;
                let (mut c, beta) = match accumulate {
                    true => (
                        take(inputs.pop().ok_or(LinalgError::WrongInputCount {
                            operation: "gemm",
                            expected: 3,
                            got: 2,
                        })?),
                        beta,
                    ),
                    false => (tile::zeros(m as usize, n as usize), 0.0),
                };
                backend.gemm(
                    trans_a,
                    trans_b,
                    alpha,
                    inputs[0].view(),
                    inputs[1].view(),
                    beta,
                    c.view_mut(),
                )?;
                Ok(c)
            }
            TileOp::Syrk { alpha, beta, .. } => {
                expect("syrk", &inputs, 2)?;
                let mut c = take(inputs.remove(1));
                backend.syrk(
                    Triangle::Lower,
                    Transpose::No,
                    alpha,
                    inputs[0].view(),
                    beta,
                    c.view_mut(),
                )?;
                Ok(c)
            }
            TileOp::Trsm {
                side,
                triangle,
                trans,
                diagonal,
                alpha,
                ..
            } => {
                expect("trsm", &inputs, 2)?;
                let mut b = take(inputs.remove(1));
                backend.trsm(
                    side,
                    triangle,
                    trans,
                    diagonal,
                    alpha,
                    inputs[0].view(),
                    b.view_mut(),
                )?;
                Ok(b)
            }
            TileOp::Potrf { tile, row, .. } => {
                expect("potrf", &inputs, 1)?;
                let mut a = take(inputs.remove(0));
                backend.potrf(a.view_mut()).map_err(|error| match error {
                    LinalgError::NotPositiveDefinite { pivot, .. } => {
                        LinalgError::NotPositiveDefinite {
                            tile: tile as usize,
                            pivot,
                            row: row as usize + pivot,
                        }
                    }
                    other => other,
                })?;
                Ok(a)
            }
        }
    }
}
