//! Right-looking tiled Cholesky `A = L·Lᵀ` (lower). Step `k` factors the
//! diagonal tile, solves the tiles below it, and updates the trailing lower
//! triangle; every update writes a new version of its tile, so the graph is
//! single-assignment and tasks of later steps start as soon as their own inputs
//! are final (lookahead comes from the graph, not from a schedule).

use wukong_dag::{Dag, DagBuilder, DataId};

use super::{TileMap, dim32};
use crate::error::shape_mismatch;
use crate::kernels::{Diagonal, Side, Transpose, Triangle};
use crate::{LinalgError, TileLayout, TileOp};

/// The graph of a tiled Cholesky factorization.
#[derive(Debug)]
pub struct CholeskyPlan {
    /// The graph.
    pub dag: Dag<TileOp>,
    /// Input tiles of `A`: the lower triangle only (`None` above the diagonal).
    pub a: TileMap,
    /// Output tiles of `L`: the lower triangle only (`None` above the diagonal,
    /// where `L` is zero).
    pub l: TileMap,
}

/// Number of tasks of the tiled Cholesky on a `t × t` tile grid.
pub fn cholesky_task_count(t: usize) -> usize {
    // potrf: t, trsm and syrk: t(t-1)/2 each, gemm: C(t, 3).
    t + t * t.saturating_sub(1) + t * t.saturating_sub(1) * t.saturating_sub(2) / 6
}

/// Plans the Cholesky factorization of a square matrix in square tiles.
pub fn cholesky_plan(a: TileLayout) -> Result<CholeskyPlan, LinalgError> {
    check_square_tiles("cholesky", a)?;
    let t = a.grid().0;
    let tasks = cholesky_task_count(t);
    let mut builder = DagBuilder::with_capacity(tasks, t * (t + 1) / 2 + tasks);
    let mut a_map = TileMap::new(a);
    for i in 0..t {
        for j in 0..=i {
            a_map.set(i, j, builder.input(a.tile_bytes(i, j)));
        }
    }
    let l_map = emit_cholesky(&mut builder, &a_map);
    for item in l_map.items.iter().flatten() {
        builder.output(*item);
    }
    Ok(CholeskyPlan {
        dag: builder.build()?,
        a: a_map,
        l: l_map,
    })
}

/// Checks that `a` is square in square tiles.
pub(crate) fn check_square_tiles(
    operation: &'static str,
    a: TileLayout,
) -> Result<(), LinalgError> {
    if a.rows() != a.cols() {
        return Err(shape_mismatch(
            operation,
            format!("the matrix must be square, it is {}×{}", a.rows(), a.cols()),
        ));
    }
    if a.tile_rows() != a.tile_cols() {
        return Err(shape_mismatch(
            operation,
            format!(
                "tiles must be square, they are {}×{}",
                a.tile_rows(),
                a.tile_cols()
            ),
        ));
    }
    Ok(())
}

/// Emits the factorization of the square, square-tiled matrix whose lower
/// triangle of tiles is in `a` (tiles above the diagonal are not read) and
/// returns the tiles of `L`.
pub(crate) fn emit_cholesky(builder: &mut DagBuilder<TileOp>, a_map: &TileMap) -> TileMap {
    let a = a_map.layout;
    let t = a.grid().0;
    let lower_index = |i: usize, j: usize| i * (i + 1) / 2 + j;
    let mut current: Vec<DataId> = Vec::with_capacity(t * (t + 1) / 2);
    for i in 0..t {
        for j in 0..=i {
            if let Some(item) = a_map.get(i, j) {
                current.push(item);
            }
        }
    }
    let mut l_map = TileMap::new(a);
    for k in 0..t {
        let nk = a.rows_of(k);
        let l_kk = builder.data(a.tile_bytes(k, k));
        builder.task(
            TileOp::Potrf {
                n: dim32(nk),
                tile: dim32(k),
                row: a.row_offset(k) as u64,
            },
            &[current[lower_index(k, k)]],
            &[l_kk],
        );
        l_map.set(k, k, l_kk);
        // Column k of L below the diagonal, indexed by i - k - 1.
        let mut column = Vec::with_capacity(t - k - 1);
        for i in k + 1..t {
            let l_ik = builder.data(a.tile_bytes(i, k));
            builder.task(
                TileOp::Trsm {
                    side: Side::Right,
                    triangle: Triangle::Lower,
                    trans: Transpose::Yes,
                    diagonal: Diagonal::NonUnit,
                    alpha: 1.0,
                    dims: [dim32(a.rows_of(i)), dim32(nk)],
                    at: [dim32(i), dim32(k)],
                },
                &[l_kk, current[lower_index(i, k)]],
                &[l_ik],
            );
            l_map.set(i, k, l_ik);
            column.push(l_ik);
        }
        for i in k + 1..t {
            let l_ik = column[i - k - 1];
            let updated = builder.data(a.tile_bytes(i, i));
            builder.task(
                TileOp::Syrk {
                    alpha: -1.0,
                    beta: 1.0,
                    dims: [dim32(a.rows_of(i)), dim32(nk)],
                    at: [dim32(i), dim32(k)],
                },
                &[l_ik, current[lower_index(i, i)]],
                &[updated],
            );
            current[lower_index(i, i)] = updated;
            for j in k + 1..i {
                let l_jk = column[j - k - 1];
                let updated = builder.data(a.tile_bytes(i, j));
                builder.task(
                    TileOp::Gemm {
                        trans_a: Transpose::No,
                        trans_b: Transpose::Yes,
                        alpha: -1.0,
                        beta: 1.0,
                        accumulate: true,
                        dims: [dim32(a.rows_of(i)), dim32(a.rows_of(j)), dim32(nk)],
                        at: [dim32(i), dim32(j), dim32(k)],
                    },
                    &[l_ik, l_jk, current[lower_index(i, j)]],
                    &[updated],
                );
                current[lower_index(i, j)] = updated;
            }
        }
    }
    l_map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_counts_match_the_formula() {
        for t in [1, 2, 3, 7, 16] {
            let plan =
                cholesky_plan(TileLayout::square_tiles(10 * t, 10 * t, 10).unwrap()).unwrap();
            assert_eq!(plan.dag.num_tasks(), cholesky_task_count(t));
        }
        assert_eq!(cholesky_task_count(128), 357_760);
    }

    #[test]
    fn non_square_inputs_are_rejected_before_building() {
        let err = cholesky_plan(TileLayout::square_tiles(10, 12, 4).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("must be square, it is 10×12"),
            "{err}"
        );
        let err = cholesky_plan(TileLayout::new(10, 10, 4, 5).unwrap()).unwrap_err();
        assert!(err.to_string().contains("tiles must be square"), "{err}");
    }
}
