//! Singular value decompositions built from TSQR and tile products.
//!
//! * Tall-skinny (`m ≫ n`, one column of tiles): `A = Q·R` by TSQR, then
//!   `R = U_R·Σ·Vᵀ` in one task, and `U = Q·U_R` by handing `U_R` down the
//!   TSQR tree, so forming `U` costs no more tasks than forming `Q`.
//! * Randomized truncated (Halko, Martinsson and Tropp): a sketch `Y = A·Ω`
//!   with `l = rank + oversampling` columns, optional power iterations
//!   `Y ← A·(Aᵀ·Y)` each re-orthonormalized by TSQR, `Q = orth(Y)`, then the
//!   tall-skinny SVD of `Bᵀ = Aᵀ·Q` gives `A ≈ (Q·V_B)·Σ·U_Bᵀ`.
//! * Full (`m ≥ n`, square tiles): tile QR and LQ sweeps reduce `A` to upper
//!   band form `B = Q_Lᵀ·A·Q_R` with the tile size as bandwidth, all in
//!   BLAS-3 tile tasks; one task then finds the band's singular values by
//!   bulge chasing to bidiagonal form (`O(n²·b)`), or with vectors its dense
//!   SVD `B = U_B·Σ·V_Bᵀ`, and `U = Q_L·U_B`, `V = Q_R·V_B` come from
//!   applying the sweeps' reflectors to the tiles of `U_B` and `V_B`.

use wukong_dag::{Dag, DagBuilder, DataId};

use super::gemm::{Operand, emit_product};
use super::qr::{Panel, check_qr, emit_band, emit_band_back};
use super::tsqr::{Tree, TsqrTree, check_arity, column_tiles};
use super::{TileMap, dim32};
use crate::error::shape_mismatch;
use crate::kernels::Transpose;
use crate::{LinalgError, TileLayout, TileOp};

/// The graph of an SVD. Singular values come as a `k × 1` tile; `U` and `V`
/// (not `Vᵀ`) as tile maps when vectors were asked for.
#[derive(Debug)]
pub struct SvdPlan {
    /// The graph.
    pub dag: Dag<TileOp>,
    /// Input tiles of `A`.
    pub a: TileMap,
    /// Input tiles of the random test matrix `Ω` (randomized SVD only).
    pub omega: Option<TileMap>,
    /// The singular values, largest first, as one column.
    pub s: DataId,
    /// Number of singular values the graph computes.
    pub k: usize,
    /// Left singular vectors, `m × k` in tiles.
    pub u: Option<TileMap>,
    /// Right singular vectors, `n × k` in tiles (tall-skinny SVD: one `n × n`
    /// tile holding `V`ᵀ's transpose, as the SVD of `R` gives it).
    pub v: Option<V>,
}

/// Where the right singular vectors are.
#[derive(Debug, Clone)]
pub enum V {
    /// `Vᵀ` in one tile (tall-skinny SVD).
    Transposed(DataId),
    /// `V` in tiles (randomized SVD).
    Tiles(TileMap),
}

/// Emits the SVD of the `k × n` item `r`: `[s]` or `[U, s, Vᵀ]`.
fn emit_small_svd(
    builder: &mut DagBuilder<TileOp>,
    r: DataId,
    (rows, cols): (usize, usize),
    vectors: bool,
) -> (DataId, Option<(DataId, DataId)>) {
    let k = rows.min(cols);
    let bytes = |r: usize, c: usize| (r * c * 8) as u64;
    let op = TileOp::Svd {
        dims: [dim32(rows), dim32(cols)],
        vectors,
    };
    if vectors {
        let (u, s, vt) = (
            builder.data(bytes(rows, k)),
            builder.data(bytes(k, 1)),
            builder.data(bytes(k, cols)),
        );
        builder.task(op, &[r], &[u, s, vt]);
        (s, Some((u, vt)))
    } else {
        let s = builder.data(bytes(k, 1));
        builder.task(op, &[r], &[s]);
        (s, None)
    }
}

/// Plans the exact SVD of a tall-skinny matrix held as one column of tiles,
/// through a TSQR with reduction `tree` (an arity, or a [`Tree`]).
pub fn tall_svd_plan(
    a: TileLayout,
    tree: impl Into<Tree>,
    vectors: bool,
) -> Result<SvdPlan, LinalgError> {
    let (mut builder, a_map, tree) = TsqrTree::of_input("svd", a, tree.into(), vectors)?;
    let (r, k) = tree.r();
    let (s, parts) = emit_small_svd(&mut builder, r, (k, a.cols()), vectors);
    builder.output(s);
    let k = k.min(a.cols());
    let (u, v) = match parts {
        Some((u_r, vt)) => {
            let tiles = tree.emit_q(&mut builder, Some((u_r, k)));
            for &tile in tiles.iter().chain([&vt]) {
                builder.output(tile);
            }
            let layout = TileLayout::new(a.rows(), k, a.tile_rows(), k.max(1))?;
            (Some(TileMap::full(layout, &tiles)), Some(V::Transposed(vt)))
        }
        None => (None, None),
    };
    Ok(SvdPlan {
        dag: builder.build()?,
        a: a_map,
        omega: None,
        s,
        k,
        u,
        v,
    })
}

/// Plans the full SVD of `a` (at least as many rows as columns, square
/// tiles) through its tile reduction to band form; the bandwidth is the tile
/// size, which sets the cost of the serial second stage (`≈ 12·n²·b` flops).
pub fn full_svd_plan(a: TileLayout, vectors: bool) -> Result<SvdPlan, LinalgError> {
    full_svd_plan_with(a, Panel::default(), vectors)
}

/// [`full_svd_plan`] with the QR and LQ panels reduced as `panel` says.
pub fn full_svd_plan_with(
    a: TileLayout,
    panel: Panel,
    vectors: bool,
) -> Result<SvdPlan, LinalgError> {
    check_full(a)?;
    let mut builder = DagBuilder::new();
    let a_map = TileMap::inputs(&mut builder, a);
    let (s, parts) = emit_full_svd(&mut builder, &a_map, panel, vectors)?;
    builder.output(s);
    let (u, v) = match parts {
        Some((u, v)) => tiled_vectors(&mut builder, u, v),
        None => (None, None),
    };
    Ok(SvdPlan {
        dag: builder.build()?,
        a: a_map,
        omega: None,
        s,
        k: a.cols(),
        u,
        v,
    })
}

/// Checks that the full SVD applies to `a` (tile QR's conditions).
pub(crate) fn check_full(a: TileLayout) -> Result<(), LinalgError> {
    check_qr(a, None).map_err(|e| match e {
        LinalgError::ShapeMismatch { detail, .. } => shape_mismatch("svd", detail),
        other => other,
    })
}

/// Emits the full SVD of `a_map` (checked by [`check_full`]): the item of
/// the singular values (`n × 1`) and, with `vectors`, the tiles of `U`
/// (laid out like `A`) and of `V` (`n × n`, square tiles).
pub(crate) fn emit_full_svd(
    builder: &mut DagBuilder<TileOp>,
    a_map: &TileMap,
    panel: Panel,
    vectors: bool,
) -> Result<(DataId, Option<(TileMap, TileMap)>), LinalgError> {
    let a = a_map.layout;
    let (n, b) = (a.cols(), a.tile_cols());
    let band = emit_band(builder, a_map, panel)?;
    let op = TileOp::BandSvd {
        rows: a.rows() as u64,
        n: dim32(n),
        band: dim32(b),
        vectors,
    };
    let outputs: Vec<DataId> = (0..op.num_outputs())
        .map(|index| match index {
            0 => builder.data((n * 8) as u64),
            _ => builder.data((b * b * 8) as u64),
        })
        .collect();
    builder.task(op, &band.parts, &outputs);
    if !vectors {
        return Ok((outputs[0], None));
    }
    let (mt, nt) = a.grid();
    let mut u = TileMap::full(a, &outputs[1..1 + mt * nt]);
    let mut v = TileMap::full(TileLayout::square_tiles(n, n, b)?, &outputs[1 + mt * nt..]);
    emit_band_back(builder, &band, &mut u, true);
    emit_band_back(builder, &band, &mut v, false);
    Ok((outputs[0], Some((u, v))))
}

/// Settings of a randomized SVD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomizedSvd {
    /// Singular triplets wanted.
    pub rank: usize,
    /// Extra sketch columns (5 to 10 is usual).
    pub oversampling: usize,
    /// Power iterations (each multiplies by `A·Aᵀ` once; 1 or 2 sharpen a
    /// slowly decaying spectrum).
    pub power_iterations: usize,
    /// The TSQR trees.
    pub tree: Tree,
}

impl RandomizedSvd {
    /// `rank` triplets, 10 extra columns, one power iteration, binary trees.
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            oversampling: 10,
            power_iterations: 1,
            tree: Tree::default(),
        }
    }

    /// Sketch width `l = rank + oversampling`, capped by the matrix.
    pub fn sketch_width(&self, a: TileLayout) -> usize {
        (self.rank + self.oversampling).min(a.rows()).min(a.cols())
    }
}

/// Orthonormal basis of the range of a one-column tile map, by TSQR.
fn emit_orth(builder: &mut DagBuilder<TileOp>, y: &TileMap, tree: Tree) -> TileMap {
    let tree = TsqrTree::emit(builder, &column_tiles(y), y.layout.cols(), tree, true);
    TileMap::full(y.layout, &tree.emit_q(builder, None))
}

/// Plans a randomized truncated SVD of `a` (any tiling). `Ω` (`n × l`, tiled
/// like `A`'s columns) is an input of the graph, so the caller chooses it.
/// The plan computes `l` triplets; callers keep the first `rank`.
pub fn randomized_svd_plan(
    a: TileLayout,
    settings: RandomizedSvd,
    vectors: bool,
) -> Result<SvdPlan, LinalgError> {
    if settings.rank == 0 {
        return Err(LinalgError::ZeroSize { what: "rank" });
    }
    if settings.rank > a.rows().min(a.cols()) {
        return Err(shape_mismatch(
            "randomized svd",
            format!(
                "rank {} exceeds min(rows, cols) of the {}×{} matrix",
                settings.rank,
                a.rows(),
                a.cols()
            ),
        ));
    }
    check_arity("randomized svd", settings.tree.arity)?;
    let l = settings.sketch_width(a);
    let mut builder = DagBuilder::new();
    let a_map = TileMap::inputs(&mut builder, a);
    let omega = TileMap::inputs(
        &mut builder,
        TileLayout::new(a.cols(), l, a.tile_cols(), l)?,
    );
    let (plain, transposed) = (
        Operand::new(&a_map, Transpose::No),
        Operand::new(&a_map, Transpose::Yes),
    );
    let product = |builder: &mut DagBuilder<TileOp>, left, right: &TileMap| {
        emit_product(builder, left, Operand::new(right, Transpose::No), 1.0, None)
    };
    let mut y = product(&mut builder, plain, &omega)?;
    for _ in 0..settings.power_iterations {
        let q = emit_orth(&mut builder, &y, settings.tree);
        let z = product(&mut builder, transposed, &q)?;
        let qz = emit_orth(&mut builder, &z, settings.tree);
        y = product(&mut builder, plain, &qz)?;
    }
    let q = emit_orth(&mut builder, &y, settings.tree);
    // Bᵀ = Aᵀ·Q is n × l: its tall-skinny SVD Bᵀ = U_B·Σ·V_Bᵀ gives A ≈ (Q·V_B)·Σ·U_Bᵀ.
    let bt = product(&mut builder, transposed, &q)?;
    let tree = TsqrTree::emit(&mut builder, &column_tiles(&bt), l, settings.tree, vectors);
    let (r, k) = tree.r();
    let (s, parts) = emit_small_svd(&mut builder, r, (k, l), vectors);
    builder.output(s);
    let (u, v) = match parts {
        Some((u_r, vt_r)) => {
            let v_tiles = tree.emit_q(&mut builder, Some((u_r, k)));
            let v = TileMap::full(TileLayout::new(a.cols(), k, a.tile_cols(), k)?, &v_tiles);
            // U = Q·V_B with V_B = (V_Bᵀ)ᵀ, one product per tile of Q.
            let vt_map = TileMap::full(TileLayout::new(k, l, k, l)?, &[vt_r]);
            let u = emit_product(
                &mut builder,
                Operand::new(&q, Transpose::No),
                Operand::new(&vt_map, Transpose::Yes),
                1.0,
                None,
            )?;
            tiled_vectors(&mut builder, u, v)
        }
        None => (None, None),
    };
    Ok(SvdPlan {
        dag: builder.build()?,
        a: a_map,
        omega: Some(omega),
        s,
        k,
        u,
        v,
    })
}

/// `U` and `V` as tiles of the result: every tile an output of the graph.
fn tiled_vectors(
    builder: &mut DagBuilder<TileOp>,
    u: TileMap,
    v: TileMap,
) -> (Option<TileMap>, Option<V>) {
    for item in u.items.iter().chain(&v.items).flatten() {
        builder.output(*item);
    }
    (Some(u), Some(V::Tiles(v)))
}
