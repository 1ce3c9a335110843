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
    super::check_scalars(&[("alpha", alpha), ("beta", c.map_or(0.0, |(_, beta)| beta))])?;

    let (grid_m, grid_k) = a.grid();
    let grid_n = b.grid().1;
    let tasks = grid_m * grid_n * grid_k;
    let mut builder = DagBuilder::with_capacity(
        tasks,
        a.num_tiles() + b.num_tiles() + tasks + out.num_tiles(),
    );
    // Every tile of every operand is read.
    let a_map = TileMap::inputs(&mut builder, a);
    let b_map = TileMap::inputs(&mut builder, b);
    let c_in = c.map(|(layout, beta)| (TileMap::inputs(&mut builder, layout), beta));
    let c_map = emit_product(
        &mut builder,
        Operand::new(&a_map, Transpose::No),
        Operand::new(&b_map, Transpose::No),
        alpha,
        c_in.as_ref().map(|(map, beta)| (map, *beta)),
    )?;
    for item in c_map.items.iter().flatten() {
        builder.output(*item);
    }
    Ok(GemmPlan {
        dag: builder.build()?,
        a: a_map,
        b: b_map,
        c_in: c_in.map(|(map, _)| map),
        c: c_map,
    })
}

/// One operand of a product: a tile map used as stored or transposed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand<'a> {
    map: &'a TileMap,
    trans: Transpose,
}

impl<'a> Operand<'a> {
    pub(crate) fn new(map: &'a TileMap, trans: Transpose) -> Self {
        Self { map, trans }
    }

    /// `(rows, cols, tile rows, tile cols)` of op(M).
    fn shape(&self) -> (usize, usize, usize, usize) {
        let l = self.map.layout;
        match self.trans {
            Transpose::No => (l.rows(), l.cols(), l.tile_rows(), l.tile_cols()),
            Transpose::Yes => (l.cols(), l.rows(), l.tile_cols(), l.tile_rows()),
        }
    }

    /// Tile `(i, j)` of op(M) (the stored tile `(j, i)` when transposed).
    fn tile(&self, i: usize, j: usize) -> Option<DataId> {
        match self.trans {
            Transpose::No => self.map.get(i, j),
            Transpose::Yes => self.map.get(j, i),
        }
    }
}

/// Emits `α·op(A)·op(B)`, plus `β·C` when `c` is given, as one chain of tile
/// products per output tile; tiles missing from a map are zero and skipped.
pub(crate) fn emit_product(
    builder: &mut DagBuilder<TileOp>,
    a: Operand<'_>,
    b: Operand<'_>,
    alpha: f64,
    c: Option<(&TileMap, f64)>,
) -> Result<TileMap, LinalgError> {
    let (m, k, tm, tk) = a.shape();
    let (k2, n, tk2, tn) = b.shape();
    if k != k2 || tk != tk2 {
        return Err(shape_mismatch(
            "gemm",
            format!(
                "op(A) is {m}×{k} in {tm}×{tk} tiles and op(B) is {k2}×{n} in {tk2}×{tn} tiles: \
                 the inner dimensions and their tiles must agree"
            ),
        ));
    }
    let out = TileLayout::new(m, n, tm, tn)?;
    if let Some((c, _)) = c {
        if c.layout != out {
            let c = c.layout;
            return Err(shape_mismatch(
                "gemm",
                format!(
                    "C is {}×{} in {}×{} tiles but A·B is {m}×{n} in {tm}×{tn} tiles",
                    c.rows(),
                    c.cols(),
                    c.tile_rows(),
                    c.tile_cols(),
                ),
            ));
        }
    }
    let inner = TileLayout::new(k, n, tk, tn)?;
    let (grid_m, grid_n) = out.grid();
    let grid_k = inner.grid().0;
    let mut c_map = TileMap::new(out);
    for i in 0..grid_m {
        for j in 0..grid_n {
            let mut previous = c.and_then(|(map, beta)| map.get(i, j).map(|item| (item, beta)));
            for p in 0..grid_k {
                let (Some(a_tile), Some(b_tile)) = (a.tile(i, p), b.tile(p, j)) else {
                    continue;
                };
                let product = builder.data(out.tile_bytes(i, j));
                let op = TileOp::Gemm {
                    trans_a: a.trans,
                    trans_b: b.trans,
                    alpha,
                    beta: previous.map_or(0.0, |(_, beta)| beta),
                    accumulate: previous.is_some(),
                    dims: [
                        dim32(out.rows_of(i)),
                        dim32(out.cols_of(j)),
                        dim32(inner.rows_of(p)),
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
                c_map.set(i, j, result);
            }
        }
    }
    Ok(c_map)
}
