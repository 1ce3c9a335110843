//! Solves: triangular systems with many right-hand sides, symmetric
//! positive-definite systems through Cholesky, and least squares through TSQR.
//!
//! A triangular solve `op(T)·X = B` in tiles is a substitution over tile rows:
//! the diagonal tile solves one block row of `X` (one task per tile of `B`),
//! and every tile below (or above) it is updated with a product, so the
//! columns of `B` are independent chains and the rows pipeline.

use wukong_dag::{Dag, DagBuilder, DataId};

use super::cholesky::{check_square_tiles, emit_cholesky};
use super::tsqr::{Tree, TsqrTree};
use super::{TileMap, dim32};
use crate::error::shape_mismatch;
use crate::kernels::{Diagonal, Side, Transpose, Triangle};
use crate::{LinalgError, TileLayout, TileOp};

/// The graph of a solve.
#[derive(Debug)]
pub struct SolvePlan {
    /// The graph.
    pub dag: Dag<TileOp>,
    /// Input tiles of the matrix (the triangle that is read, for triangular
    /// and Cholesky solves; `[A B]` side by side for least squares).
    pub a: TileMap,
    /// Input tiles of the right-hand sides (`None` for least squares, whose
    /// right-hand sides travel in `a`).
    pub b: Option<TileMap>,
    /// Tiles of the solution.
    pub x: TileMap,
}

fn check_rhs(operation: &'static str, t: TileLayout, b: TileLayout) -> Result<(), LinalgError> {
    if b.rows() != t.rows() || b.tile_rows() != t.tile_rows() {
        return Err(shape_mismatch(
            operation,
            format!(
                "the matrix is {}×{} in {}-row tiles but B is {}×{} in {}-row tiles: \
                 B must have as many rows, in the same row tiles",
                t.rows(),
                t.cols(),
                t.tile_rows(),
                b.rows(),
                b.cols(),
                b.tile_rows()
            ),
        ));
    }
    Ok(())
}

/// Declares the tiles of `triangle` of a square tiled matrix as inputs.
fn triangle_inputs(
    builder: &mut DagBuilder<TileOp>,
    layout: TileLayout,
    triangle: Triangle,
) -> TileMap {
    let mut map = TileMap::new(layout);
    let t = layout.grid().0;
    for i in 0..t {
        for j in 0..t {
            let wanted = match triangle {
                Triangle::Lower => j <= i,
                Triangle::Upper => j >= i,
            };
            if wanted {
                map.set(i, j, builder.input(layout.tile_bytes(i, j)));
            }
        }
    }
    map
}

/// Emits the solution of `op(T)·X = B` where `T` is triangular (its
/// `triangle` in `t`), returning the tiles of `X`.
pub(crate) fn emit_triangular_solve(
    builder: &mut DagBuilder<TileOp>,
    t: &TileMap,
    triangle: Triangle,
    trans: Transpose,
    b: &TileMap,
) -> TileMap {
    let layout = b.layout;
    let (grid, cols) = layout.grid();
    // op(T) is lower triangular when T is lower and used as is, or upper and transposed.
    let lower = (triangle == Triangle::Lower) == (trans == Transpose::No);
    let order: Vec<usize> = if lower {
        (0..grid).collect()
    } else {
        (0..grid).rev().collect()
    };
    // Tile (i, k) of op(T): the stored tile and whether it is transposed.
    let op_tile = |i: usize, k: usize| match trans {
        Transpose::No => t.get(i, k),
        Transpose::Yes => t.get(k, i),
    };
    let mut current: Vec<Option<DataId>> = b.items.clone();
    let mut x = TileMap::new(layout);
    for (position, &k) in order.iter().enumerate() {
        let Some(diagonal) = t.get(k, k) else {
            continue;
        };
        for j in 0..cols {
            let Some(rhs) = current[layout.tile_index(k, j)] else {
                continue;
            };
            let solved = builder.data(layout.tile_bytes(k, j));
            builder.task(
                TileOp::Trsm {
                    side: Side::Left,
                    triangle,
                    trans,
                    diagonal: Diagonal::NonUnit,
                    alpha: 1.0,
                    dims: [dim32(layout.rows_of(k)), dim32(layout.cols_of(j))],
                    at: [dim32(k), dim32(j)],
                },
                &[diagonal, rhs],
                &[solved],
            );
            x.set(k, j, solved);
            for &i in &order[position + 1..] {
                let (Some(factor), Some(target)) =
                    (op_tile(i, k), current[layout.tile_index(i, j)])
                else {
                    continue;
                };
                let updated = builder.data(layout.tile_bytes(i, j));
                builder.task(
                    TileOp::Gemm {
                        trans_a: trans,
                        trans_b: Transpose::No,
                        alpha: -1.0,
                        beta: 1.0,
                        accumulate: true,
                        dims: [
                            dim32(layout.rows_of(i)),
                            dim32(layout.cols_of(j)),
                            dim32(layout.rows_of(k)),
                        ],
                        at: [dim32(i), dim32(j), dim32(k)],
                    },
                    &[factor, solved, target],
                    &[updated],
                );
                current[layout.tile_index(i, j)] = Some(updated);
            }
        }
    }
    x
}

fn outputs(builder: &mut DagBuilder<TileOp>, map: &TileMap) {
    for item in map.items.iter().flatten() {
        builder.output(*item);
    }
}

/// Plans `op(T)·X = B` for a square, square-tiled triangular `T` of which
/// only `triangle` is read, and `B` with the same row tiles.
pub fn triangular_solve_plan(
    t: TileLayout,
    triangle: Triangle,
    trans: Transpose,
    b: TileLayout,
) -> Result<SolvePlan, LinalgError> {
    check_square_tiles("triangular solve", t)?;
    check_rhs("triangular solve", t, b)?;
    let mut builder = DagBuilder::new();
    let t_map = triangle_inputs(&mut builder, t, triangle);
    let b_map = TileMap::inputs(&mut builder, b);
    let x = emit_triangular_solve(&mut builder, &t_map, triangle, trans, &b_map);
    outputs(&mut builder, &x);
    Ok(SolvePlan {
        dag: builder.build()?,
        a: t_map,
        b: Some(b_map),
        x,
    })
}

/// Plans `A·X = B` for a symmetric positive-definite `A` (its lower triangle
/// is read): `A = L·Lᵀ`, then `L·Y = B` and `Lᵀ·X = Y`, in one graph, so the
/// factor never has to leave the executors that made it.
pub fn cholesky_solve_plan(a: TileLayout, b: TileLayout) -> Result<SolvePlan, LinalgError> {
    check_square_tiles("cholesky solve", a)?;
    check_rhs("cholesky solve", a, b)?;
    let mut builder = DagBuilder::new();
    let a_map = triangle_inputs(&mut builder, a, Triangle::Lower);
    let b_map = TileMap::inputs(&mut builder, b);
    let l = emit_cholesky(&mut builder, &a_map);
    let y = emit_triangular_solve(&mut builder, &l, Triangle::Lower, Transpose::No, &b_map);
    let x = emit_triangular_solve(&mut builder, &l, Triangle::Lower, Transpose::Yes, &y);
    outputs(&mut builder, &x);
    Ok(SolvePlan {
        dag: builder.build()?,
        a: a_map,
        b: Some(b_map),
        x,
    })
}

/// Plans the least-squares solution of `min ‖A·X − B‖` for a tall `A` of full
/// column rank. The input is `[A B]` side by side in one column of tiles
/// (`n + r` columns): its TSQR gives `[R Qᵀ·B]` in the top rows of the root's
/// factor, so `Q` is never formed, and one task solves `R·X = Qᵀ·B`.
pub fn lstsq_plan(
    ab: TileLayout,
    n: usize,
    tree: impl Into<Tree>,
) -> Result<SolvePlan, LinalgError> {
    if n == 0 || n >= ab.cols() {
        return Err(shape_mismatch(
            "least squares",
            format!(
                "[A B] has {} columns, so A's column count {n} must be between 1 and {}",
                ab.cols(),
                ab.cols().saturating_sub(1)
            ),
        ));
    }
    if ab.rows() < n {
        return Err(shape_mismatch(
            "least squares",
            format!(
                "A is {}×{n}: least squares needs at least as many rows as columns",
                ab.rows()
            ),
        ));
    }
    let rhs = ab.cols() - n;
    let (mut builder, ab_map, tree) = TsqrTree::of_input("least squares", ab, tree.into(), false)?;
    let (r, _) = tree.r();
    let x = builder.data((n * rhs * 8) as u64);
    builder.task(
        TileOp::SolveR {
            n: dim32(n),
            rhs: dim32(rhs),
        },
        &[r],
        &[x],
    );
    builder.output(x);
    Ok(SolvePlan {
        dag: builder.build()?,
        a: ab_map,
        b: None,
        x: TileMap::full(TileLayout::new(n, rhs, n, rhs)?, &[x]),
    })
}
