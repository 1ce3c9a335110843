//! Running a [`TileOp`]: one dispatch from the operation to its kernel.

use std::sync::Arc;

use super::TileOp;
use super::composite::{band_svd, expect, house_apply, qr_stacked, solve_r, stack};
use crate::LinalgError;
use crate::kernels::{TileBackend, Transpose, Triangle};
use crate::tile::{self, Tile, unshared as take};

impl TileOp {
    /// Runs the operation on its input tiles and returns the tiles it
    /// writes, in the order the variant lists them.
    pub fn execute(
        &self,
        backend: &dyn TileBackend,
        mut inputs: Vec<Arc<Tile>>,
    ) -> Result<Vec<Tile>, LinalgError> {
        match *self {
            TileOp::Qr {
                cols,
                parts,
                explicit_q,
                method,
                input_row,
                ..
            } => qr_stacked(
                backend,
                inputs,
                (cols as usize, parts as usize),
                (explicit_q, method),
                input_row,
            ),
            TileOp::Svd { vectors, .. } => {
                expect("svd", &inputs, 1)?;
                let a = inputs.into_iter().next().map(take).unwrap_or_default();
                let parts = backend.svd(a, vectors)?;
                let s = Tile::from_shape_vec((parts.s.len(), 1), parts.s).map_err(|e| {
                    crate::error::shape_mismatch("svd", format!("singular values: {e}"))
                })?;
                Ok(match (parts.u, parts.vt) {
                    (Some(u), Some(vt)) => vec![u, s, vt],
                    _ => vec![s],
                })
            }
            TileOp::HouseQr {
                cols, parts, lq, ..
            } => {
                expect("tile qr", &inputs, parts as usize)?;
                let mut inputs = inputs;
                if lq {
                    if let Some(last) = inputs.last_mut() {
                        *last = Arc::new(tile::to_column_major(last.t()));
                    }
                }
                let mut stacked = stack(inputs, cols as usize)?;
                let coeff = crate::kernels::qr_factored(&mut stacked);
                let k = stacked.nrows().min(stacked.ncols());
                let r = tile::upper_rows(stacked.view(), k);
                Ok(vec![stacked, coeff, r])
            }
            TileOp::HouseApply {
                parts,
                transpose,
                lq,
                ..
            } => {
                expect("tile qr update", &inputs, parts as usize + 2)?;
                if !lq {
                    return house_apply(inputs, transpose);
                }
                let flipped = inputs
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| match i {
                        0 | 1 => t,
                        _ => Arc::new(tile::to_column_major(t.t())),
                    })
                    .collect();
                Ok(house_apply(flipped, transpose)?
                    .into_iter()
                    .map(|t| tile::to_column_major(t.t()))
                    .collect())
            }
            TileOp::BandSvd {
                rows,
                n,
                band,
                vectors,
            } => band_svd(
                backend,
                &inputs,
                rows as usize,
                n as usize,
                band as usize,
                vectors,
            ),
            TileOp::Eye {
                dims: [rows, cols],
                offset,
            } => {
                expect("eye", &inputs, 0)?;
                let mut t = tile::zeros(rows as usize, cols as usize);
                for r in 0..rows as usize {
                    let c = r as i64 + offset;
                    if (0..i64::from(cols)).contains(&c) {
                        t[[r, c as usize]] = 1.0;
                    }
                }
                Ok(vec![t])
            }
            TileOp::Combine {
                terms,
                scales,
                trans,
                shift,
                dims: [rows, cols],
                offset,
            } => {
                expect("combine", &inputs, terms as usize)?;
                let (rows, cols) = (rows as usize, cols as usize);
                let mut out = tile::zeros(rows, cols);
                for ((input, scale), t) in inputs.iter().zip(scales).zip(trans) {
                    let view = match t {
                        Transpose::No => input.view(),
                        Transpose::Yes => input.t(),
                    };
                    if view.dim() != (rows, cols) {
                        return Err(crate::error::shape_mismatch(
                            "combine",
                            format!("a {:?} tile where {rows}×{cols} was expected", view.dim()),
                        ));
                    }
                    out.scaled_add(scale, &view);
                }
                for r in 0..rows {
                    let c = r as i64 + offset;
                    if shift != 0.0 && (0..cols as i64).contains(&c) {
                        out[[r, c as usize]] += shift;
                    }
                }
                Ok(vec![out])
            }
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
                Ok(vec![c])
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
                Ok(vec![c])
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
                Ok(vec![b])
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
                Ok(vec![a])
            }
            TileOp::SolveR { n, rhs } => {
                expect("solve_r", &inputs, 1)?;
                solve_r(backend, &inputs[0], n as usize, rhs as usize).map(|x| vec![x])
            }
        }
    }
}
