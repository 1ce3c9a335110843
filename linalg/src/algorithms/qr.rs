//! Tile Householder QR of a general `m × n` matrix (`m ≥ n`) in square tiles,
//! as PLASMA formulates it: at step `k` the diagonal tile is factored
//! (GEQRT) and its `Qᵀ` applied along its tile row (ORMQR); then each tile
//! below is eliminated against the running `R` (TSQRT) and the pair of tile
//! rows updated (TSMQR). Every kernel is a Householder QR or the application
//! of one, so the factorization is backward stable for any input. The same
//! updates applied to extra tiles give `Qᵀ·B`, and applied in reverse to the
//! identity give the explicit thin `Q`.

use wukong_dag::{Dag, DagBuilder, DataId};

use super::{TileMap, dim32};
use crate::error::shape_mismatch;
use crate::{LinalgError, TileLayout, TileOp};

/// The graph of a tiled QR.
#[derive(Debug)]
pub struct QrPlan {
    /// The graph.
    pub dag: Dag<TileOp>,
    /// Input tiles of `A`.
    pub a: TileMap,
    /// Tiles of `R` (`n × n`, square tiles; `None` below the diagonal).
    pub r: TileMap,
    /// Tiles of the thin `Q` (`m × n`, laid out like `A`), when asked for.
    pub q: Option<TileMap>,
    /// Input tiles of `B`, when `Qᵀ·B` was asked for.
    pub b: Option<TileMap>,
    /// Tiles of `Qᵀ·B` (`m × r`, laid out like `B`).
    pub qtb: Option<TileMap>,
}

/// One factorization: which tile rows it covers and its factored form.
pub(crate) struct Step {
    /// Tile row of the surviving `R` (the diagonal tile's row for a flat
    /// panel).
    k: usize,
    /// Tile column of the panel.
    col: usize,
    /// The eliminated tile row (`k` itself for GEQRT).
    i: usize,
    f: DataId,
    c: DataId,
    rows: usize,
    reflectors: usize,
}

/// Emits `Q·X` or `Qᵀ·X` of one factorization on the tiles of `x` in
/// columns `from..`, updating `x` in place. With `lq`, `x` is the transposed
/// view of a matrix whose tiles are stored untransposed (an LQ's update).
fn apply(
    builder: &mut DagBuilder<TileOp>,
    step: &Step,
    x: &mut TileMap,
    from: usize,
    transpose: bool,
    lq: bool,
) {
    let layout = x.layout;
    for j in from..layout.grid().1 {
        let mut reads = vec![step.f, step.c];
        let mut rows = vec![step.k];
        if step.i != step.k {
            rows.push(step.i);
        }
        let Some(tiles) = rows
            .iter()
            .map(|&r| x.get(r, j))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        reads.extend(&tiles);
        let writes: Vec<DataId> = rows
            .iter()
            .map(|&r| builder.data(layout.tile_bytes(r, j)))
            .collect();
        builder.task(
            TileOp::HouseApply {
                rows: step.rows as u64,
                cols: dim32(layout.cols_of(j)),
                k: dim32(step.reflectors),
                parts: dim32(rows.len()),
                transpose,
                lq,
                at: [dim32(step.i), dim32(j), dim32(step.k)],
            },
            &reads,
            &writes,
        );
        for (&r, &item) in rows.iter().zip(&writes) {
            x.set(r, j, item);
        }
    }
}

/// Applies `steps` in reverse, untransposed, to every column of `x`: `Q·X`
/// for the `Q` they factored.
fn apply_back(builder: &mut DagBuilder<TileOp>, steps: &[Step], x: &mut TileMap) {
    for step in steps.iter().rev() {
        apply(builder, step, x, 0, false, false);
    }
}

/// How the tiles of a panel are reduced to one `R`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Panel {
    /// The top tile is factored, then each tile below is eliminated against
    /// the running `R` in turn (TS kernels): fewest flops, a critical path as
    /// long as the panel.
    #[default]
    Flat,
    /// Every tile is factored at once, then the `R`s are eliminated in pairs
    /// up a binary tree (TT kernels): communication-avoiding, a critical path
    /// of `log₂` of the panel's tiles, more flops. Panels whose tiles are
    /// taller than the panel is wide fall back to `Flat`.
    Binary,
}

impl std::str::FromStr for Panel {
    type Err = wukong_dag::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flat" => Ok(Panel::Flat),
            "binary" => Ok(Panel::Binary),
            other => Err(wukong_dag::UnknownName {
                what: "panel tree",
                given: other.to_owned(),
                expected: "flat or binary",
            }),
        }
    }
}

/// Emits one factorization of the stacked `reads` (a tile, or two `R`s)
/// with `rows` rows, applies its `Qᵀ` to the columns right of `k` (rows
/// `survivor` and `eliminated`) and to every column of `extra`, and returns
/// the new `R` and its rows.
#[allow(clippy::too_many_arguments)] // one place that emits both kinds of step
fn emit_step(
    builder: &mut DagBuilder<TileOp>,
    x: &mut TileMap,
    (k, survivor, eliminated): (usize, usize, usize),
    (reads, rows, tt): (&[DataId], usize, bool),
    lq: bool,
    extra: Option<&mut TileMap>,
    steps: &mut Vec<Step>,
) -> (DataId, usize) {
    let cols = x.layout.cols_of(k);
    let bytes = |r: usize, c: usize| (r * c * 8) as u64;
    let reflectors = rows.min(cols);
    let (f, c, r) = (
        builder.data(bytes(rows, cols)),
        builder.data(bytes(reflectors, reflectors)),
        builder.data(bytes(reflectors, cols)),
    );
    // With `lq` a tile of the matrix (read last) is transposed; two `R`s
    // (a TT step) are in the factored orientation already.
    builder.task(
        TileOp::HouseQr {
            rows: rows as u64,
            cols: dim32(cols),
            parts: dim32(reads.len()),
            lq: lq && !tt,
            at: [dim32(eliminated), dim32(k)],
        },
        reads,
        &[f, c, r],
    );
    let step = Step {
        k: survivor,
        col: k,
        i: eliminated,
        f,
        c,
        rows,
        reflectors,
    };
    apply(builder, &step, x, k + 1, true, lq);
    if let Some(b) = extra {
        apply(builder, &step, b, 0, true, false);
    }
    steps.push(step);
    (r, reflectors)
}

/// Emits the factorization of tile column `k` of `x` from tile row `first`
/// down as `panel` says, applying each `Qᵀ` to the columns right of `k` and
/// to every column of `extra`. Appends the factorizations to `steps` and
/// returns the final `R` (in tile row `first`) with its rows.
#[allow(clippy::too_many_arguments)] // the panel's coordinates and its options
fn emit_panel(
    builder: &mut DagBuilder<TileOp>,
    x: &mut TileMap,
    k: usize,
    first: usize,
    lq: bool,
    panel: Panel,
    mut extra: Option<&mut TileMap>,
    steps: &mut Vec<Step>,
) -> Option<(DataId, usize)> {
    let layout = x.layout;
    let cols = layout.cols_of(k);
    let present: Vec<(usize, DataId)> = (first..layout.grid().0)
        .filter_map(|i| x.get(i, k).map(|tile| (i, tile)))
        .collect();
    // A TT step pairs whole tiles only: each tile must be as short as its R.
    let binary = panel == Panel::Binary && present.iter().all(|&(i, _)| layout.rows_of(i) <= cols);
    if !binary {
        let mut running: Option<(DataId, usize)> = None;
        let top = present.first().map_or(first, |&(i, _)| i);
        for (i, tile) in present {
            let (reads, rows) = match running {
                Some((r, r_rows)) => (vec![r, tile], r_rows + layout.rows_of(i)),
                None => (vec![tile], layout.rows_of(i)),
            };
            let survivor = if running.is_some() { top } else { i };
            running = Some(emit_step(
                builder,
                x,
                (k, survivor, i),
                (&reads, rows, false),
                lq,
                extra.as_deref_mut(),
                steps,
            ));
        }
        return running;
    }
    let mut level: Vec<(usize, DataId, usize)> = present
        .into_iter()
        .map(|(i, tile)| {
            let (r, rows) = emit_step(
                builder,
                x,
                (k, i, i),
                (&[tile], layout.rows_of(i), false),
                lq,
                extra.as_deref_mut(),
                steps,
            );
            (i, r, rows)
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match *pair {
                [(s, rs, s_rows), (i, ri, i_rows)] => {
                    let (r, rows) = emit_step(
                        builder,
                        x,
                        (k, s, i),
                        (&[rs, ri], s_rows + i_rows, true),
                        lq,
                        extra.as_deref_mut(),
                        steps,
                    );
                    (s, r, rows)
                }
                _ => pair[0],
            })
            .collect();
    }
    level.first().map(|&(_, r, rows)| (r, rows))
}

/// The tiles of `R`, of the thin `Q` (with `explicit_q`) and of `Qᵀ·B`.
pub(crate) type QrTiles = (TileMap, Option<TileMap>, Option<TileMap>);

/// Emits the tile QR of `a_map` (checked by [`check_qr`]), with `Q` and
/// `Qᵀ·B` on request.
pub(crate) fn emit_qr(
    builder: &mut DagBuilder<TileOp>,
    a_map: &TileMap,
    panel: Panel,
    explicit_q: bool,
    b_map: Option<&TileMap>,
) -> Result<QrTiles, LinalgError> {
    let a = a_map.layout;
    let mut x = a_map.clone();
    let mut qtb = b_map.cloned();
    let (mt, nt) = a.grid();
    let r_layout = TileLayout::square_tiles(a.cols(), a.cols(), a.tile_cols())?;
    let mut r_map = TileMap::new(r_layout);
    let mut steps = Vec::new();
    for k in 0..nt {
        if let Some((r, _)) = emit_panel(
            builder,
            &mut x,
            k,
            k,
            false,
            panel,
            qtb.as_mut(),
            &mut steps,
        ) {
            r_map.set(k, k, r);
        }
        for j in k + 1..nt {
            if let Some(item) = x.get(k, j) {
                r_map.set(k, j, item);
            }
        }
    }
    let q = if explicit_q {
        // Q = Q₀·Q₁·… applied to the first n columns of the identity; the
        // columns left of a step's panel are still those of the identity
        // there, which the step leaves alone.
        let mut e = TileMap::new(a);
        for i in 0..mt {
            for j in 0..nt {
                let item = builder.data(a.tile_bytes(i, j));
                let offset = a.row_offset(i) as i64 - a.col_offset(j) as i64;
                builder.task(
                    TileOp::Eye {
                        dims: [dim32(a.rows_of(i)), dim32(a.cols_of(j))],
                        offset,
                    },
                    &[],
                    &[item],
                );
                e.set(i, j, item);
            }
        }
        for step in steps.iter().rev() {
            apply(builder, step, &mut e, step.col, false, false);
        }
        Some(e)
    } else {
        None
    };
    Ok((r_map, q, qtb))
}

/// A matrix reduced to upper band form `B = Q_Lᵀ·A·Q_R` by alternating tile
/// QR sweeps down a column and LQ sweeps along a row.
pub(crate) struct BandForm {
    /// `[R₀, L₀ᵀ, R₁, L₁ᵀ, …, R_last]`, as [`TileOp::BandSvd`] reads them.
    pub parts: Vec<DataId>,
    /// The factorizations of the QR sweeps (`Q_L = Q₀·Q₁·…`).
    pub left: Vec<Step>,
    /// Those of the LQ sweeps, on the transposed matrix (`Q_R`).
    pub right: Vec<Step>,
}

/// Emits the reduction of `a_map` (`m ≥ n`, square tiles, checked by
/// [`check_qr`]) to upper band form with the tile size as bandwidth: at step
/// `k` a QR of tile column `k` (rows `k..`) and an LQ of tile row `k`
/// (columns `k + 1..`), each applied to the rest of the matrix. The diagonal
/// tiles end upper triangular and those right of them lower triangular.
pub(crate) fn emit_band(
    builder: &mut DagBuilder<TileOp>,
    a_map: &TileMap,
    panel: Panel,
) -> Result<BandForm, LinalgError> {
    let nt = a_map.layout.grid().1;
    let mut x = a_map.clone();
    let mut band = BandForm {
        parts: Vec::new(),
        left: Vec::new(),
        right: Vec::new(),
    };
    let missing = || shape_mismatch("band reduction", "a panel has no tiles".into());
    for k in 0..nt {
        let (r, _) = emit_panel(builder, &mut x, k, k, false, panel, None, &mut band.left)
            .ok_or_else(missing)?;
        band.parts.push(r);
        if k + 1 < nt {
            let mut xt = x.transposed();
            let (l, _) = emit_panel(
                builder,
                &mut xt,
                k,
                k + 1,
                true,
                panel,
                None,
                &mut band.right,
            )
            .ok_or_else(missing)?;
            band.parts.push(l);
            x = xt.transposed();
        }
    }
    Ok(band)
}

/// `Q_L·X` (`left`) or `Q_R·X` for the two sides of a band form, applied
/// to every column of `x`.
pub(crate) fn emit_band_back(
    builder: &mut DagBuilder<TileOp>,
    band: &BandForm,
    x: &mut TileMap,
    left: bool,
) {
    apply_back(builder, if left { &band.left } else { &band.right }, x);
}

/// Checks that tile QR applies to `a` (and `B`, when given).
pub(crate) fn check_qr(a: TileLayout, rhs: Option<TileLayout>) -> Result<(), LinalgError> {
    // Square tiles; a single column of tiles may be taller than wide.
    if a.tile_rows() != a.tile_cols() && (a.grid().1 > 1 || a.tile_rows() < a.tile_cols()) {
        return Err(shape_mismatch(
            "qr",
            format!(
                "tiles must be square, they are {}×{}",
                a.tile_rows(),
                a.tile_cols()
            ),
        ));
    }
    if a.rows() < a.cols() {
        return Err(shape_mismatch(
            "qr",
            format!(
                "A is {}×{}: tiled QR needs at least as many rows as columns (factor Aᵀ for a wide matrix)",
                a.rows(),
                a.cols()
            ),
        ));
    }
    if let Some(b) = rhs {
        if b.rows() != a.rows() || b.tile_rows() != a.tile_rows() {
            return Err(shape_mismatch(
                "qr",
                format!(
                    "B is {}×{} in {}-row tiles; it needs A's {} rows in {}-row tiles",
                    b.rows(),
                    b.cols(),
                    b.tile_rows(),
                    a.rows(),
                    a.tile_rows()
                ),
            ));
        }
    }
    Ok(())
}

/// Plans `A = Q·R` for `A` with at least as many rows as columns in square
/// tiles; with `explicit_q` the thin `Q` too, and with `rhs` (laid out in
/// the same row tiles as `A`) `Qᵀ·B`.
pub fn qr_plan(
    a: TileLayout,
    explicit_q: bool,
    rhs: Option<TileLayout>,
) -> Result<QrPlan, LinalgError> {
    qr_plan_with(a, Panel::default(), explicit_q, rhs)
}

/// [`qr_plan`] with the panels reduced as `panel` says.
pub fn qr_plan_with(
    a: TileLayout,
    panel: Panel,
    explicit_q: bool,
    rhs: Option<TileLayout>,
) -> Result<QrPlan, LinalgError> {
    check_qr(a, rhs)?;
    let mut builder = DagBuilder::new();
    let a_map = TileMap::inputs(&mut builder, a);
    let b_map = rhs.map(|b| TileMap::inputs(&mut builder, b));
    let (r_map, q, qtb) = emit_qr(&mut builder, &a_map, panel, explicit_q, b_map.as_ref())?;
    for map in [Some(&r_map), q.as_ref(), qtb.as_ref()]
        .into_iter()
        .flatten()
    {
        for item in map.items.iter().flatten() {
            builder.output(*item);
        }
    }
    Ok(QrPlan {
        dag: builder.build()?,
        a: a_map,
        r: r_map,
        q,
        b: b_map,
        qtb,
    })
}
