//! `C = α·A·B + β·C` in tiles: each output tile is a chain of tile products
//! along the inner dimension, so a chain can stay on one executor.

use wukong_dag::{Dag, DagBuilder, DataId};

use super::{TileMap, dim32};
use crate::error::shape_mismatch;
use crate::kernels::Transpose;
use crate::{LinalgError, TileLayout, TileOp};

/// The graph of a tiled matrix product.
#[derive(Debug)]
pub struct GemmPlan {
    /// The graph.
    pub dag: Dag<TileOp>,
    /// Input tiles of `A`.
    pub a: TileMap,
    /// Input tiles of `B`.
    pub b: TileMap,
    /// Input tiles of `C` when `β·C` is added.
    pub c_in: Option<TileMap>,
    /// Output tiles of the result.
    pub c: TileMap,
}

/// Floating-point operations of an `m×k` by `k×n` product.
pub fn gemm_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

/// Plans `α·A·B` or, with `c`, `α·A·B + β·C`. The inner tile sizes must agree
/// (`A`'s tile columns are `B`'s tile rows) and `C` must be laid out like the result.
pub fn gemm_plan(
    a: TileLayout,
    b: TileLayout,
    alpha: f64,
    c: Option<(TileLayout, f64)>,
) -> Result<GemmPlan, LinalgError> {
    if a.cols() != b.rows() {
        return Err(shape_mismatch(
            "gemm",
            format!(
                "A is {}×{} and B is {}×{}: A's columns must equal B's rows",
                a.rows(),
                a.cols(),
                b.rows(),
                b.cols()
            ),
        ));
    }
    if a.tile_cols() != b.tile_rows() {
        return Err(shape_mismatch(
            "gemm",
            format!(
                "A's tiles have {} columns but B's tiles have {} rows; they must agree",
                a.tile_cols(),
                b.tile_rows()
            ),
        ));
    }
    let out = TileLayout::new(a.rows(), b.cols(), a.tile_rows(), b.tile_cols())?;
    if let Some((c, _)) = c {
        if c != out {
            return Err(shape_mismatch(
                "gemm",
                format!(
                    "C is {}×{} in {}×{} tiles but A·B is {}×{} in {}×{} tiles",
                    c.rows(),
                    c.cols(),
                    c.tile_rows(),
                    c.tile_cols(),
                    out.rows(),
                    out.cols(),
                    out.tile_rows(),
                    out.tile_cols()
                ),
            ));
        }
    }
    for (what, value) in [("alpha", alpha), ("beta", c.map_or(0.0, |(_, beta)| beta))] {
        if !value.is_finite() {
            return Err(LinalgError::NonFinite {
                matrix: what,
                row: 0,
                col: 0,
                value,
            });
        }
    }

    let (grid_m, grid_k) = a.grid();
    let grid_n = b.grid().1;
    let tasks = grid_m * grid_n * grid_k;
    let mut builder = DagBuilder::with_capacity(
        tasks,
        a.num_tiles() + b.num_tiles() + tasks + out.num_tiles(),
    );
    // Every tile of every operand is read: dense ids in row-major tile order.
    let declare_inputs = |builder: &mut DagBuilder<TileOp>, layout: TileLayout| -> Vec<DataId> {
        let (rows, cols) = layout.grid();
        (0..rows * cols)
            .map(|index| builder.input(layout.tile_bytes(index / cols, index % cols)))
            .collect()
    };
    let a_ids = declare_inputs(&mut builder, a);
    let b_ids = declare_inputs(&mut builder, b);
    let c_in = c.map(|(layout, beta)| (declare_inputs(&mut builder, layout), beta));
    let mut c_map = TileMap::new(out);
    for i in 0..grid_m {
        for j in 0..grid_n {
            let mut previous = c_in
                .as_ref()
                .map(|(ids, beta)| (ids[out.tile_index(i, j)], *beta));
            for p in 0..grid_k {
                let product = builder.data(out.tile_bytes(i, j));
                let (a_tile, b_tile) = (a_ids[a.tile_index(i, p)], b_ids[b.tile_index(p, j)]);
                let op = TileOp::Gemm {
                    trans_a: Transpose::No,
                    trans_b: Transpose::No,
                    alpha,
                    beta: previous.map_or(0.0, |(_, beta)| beta),
                    accumulate: previous.is_some(),
                    dims: [
                        dim32(out.rows_of(i)),
                        dim32(out.cols_of(j)),
                        dim32(a.cols_of(p)),
                    ],
                    at: [dim32(i), dim32(j), dim32(p)],
                };
                match previous {
                    Some((c_tile, _)) => builder.task(op, &[a_tile, b_tile, c_tile], &[product]),
                    None => builder.task(op, &[a_tile, b_tile], &[product]),
                };
                previous = Some((product, 1.0));
            }
            if let Some((result, _)) = previous {
                builder.output(result);
                c_map.set(i, j, result);
            }
        }
    }
    Ok(GemmPlan {
        dag: builder.build()?,
        a: TileMap::full(a, &a_ids),
        b: TileMap::full(b, &b_ids),
        c_in: c
            .zip(c_in)
            .map(|((layout, _), (ids, _))| TileMap::full(layout, &ids)),
        c: c_map,
    })
}
