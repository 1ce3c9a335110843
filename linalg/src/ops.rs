use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wukong_dag::Operation;

use crate::LinalgError;
use crate::kernels::band::{Band, bidiagonal_singular_values};
use crate::kernels::{Diagonal, Side, TileBackend, Transpose, Triangle};
use crate::tile::{self, Tile, unshared as take};

/// How the QR of a tall tile is computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QrMethod {
    /// Householder reflections: backward stable for any input.
    Householder,
    /// CholeskyQR2 ([`cholesky_qr2`], the default): matrix products only, so
    /// 1.4–1.6× faster on tall tiles; a tile it cannot factor accurately (κ
    /// above about 10⁷) falls back to Householder, so the result is as
    /// accurate either way.
    #[default]
    CholeskyQr2,
}

impl std::str::FromStr for QrMethod {
    type Err = wukong_dag::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "householder" => Ok(QrMethod::Householder),
            "cholesky-qr2" | "cholqr2" => Ok(QrMethod::CholeskyQr2),
            other => Err(wukong_dag::UnknownName {
                what: "QR method",
                given: other.to_owned(),
                expected: "householder or cholesky-qr2",
            }),
        }
    }
}

/// One tile operation of a tiled algorithm. Most write one tile; the inputs
/// they read and the outputs they write, in order, are listed with each variant. Dimensions are carried for the
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
    /// Householder QR of its `parts` input tiles stacked on top of each other
    /// (all with `cols` columns, `rows` rows in all): writes `[R]`, or with
    /// `explicit_q` `[Q₁, …, Q_parts, R]`, where `Qᵢ` holds the rows of the
    /// thin `Q` that belong to input `i`. `R` is `min(rows, cols) × cols`.
    Qr {
        /// Rows of the stacked inputs.
        rows: u64,
        /// Columns of every input.
        cols: u32,
        /// Number of inputs.
        parts: u32,
        /// Whether `Q` is formed.
        explicit_q: bool,
        /// How the stack is factored.
        method: QrMethod,
        /// `[level, index]` in a reduction tree (level 0: tiles of the matrix).
        at: [u32; 2],
        /// For a leaf over the caller's matrix `A`: the row of `A` where its
        /// tile starts. The leaf then rejects a NaN or ∞ in its tile with
        /// [`LinalgError::NonFinite`] on `A` at that position, so that no
        /// pass over the whole input is needed before the run (CholeskyQR2's
        /// first product finds them at no cost; Householder scans first).
        input_row: Option<u64>,
    },
    /// Householder QR of its `parts` input tiles stacked on top of each other,
    /// kept in factored form for [`TileOp::HouseApply`]: writes `[F, C, R]`,
    /// the factored stack (reflectors below the diagonal), its block factor
    /// and `R` (`min(rows, cols) × cols`, upper). Tile QR's GEQRT (one part)
    /// and TSQRT (`R` above a tile). With `lq` the last input (a tile of the
    /// matrix) is read transposed, which makes this the LQ of its rows; `F`,
    /// `C` and `R` stay in the transposed orientation (`R = Lᵀ`).
    HouseQr {
        /// Rows of the stack.
        rows: u64,
        /// Columns.
        cols: u32,
        /// Number of inputs.
        parts: u32,
        /// LQ: the matrix tile is read transposed.
        lq: bool,
        /// `[row, col]` of the tile being eliminated.
        at: [u32; 2],
    },
    /// Applies the `Q` of a [`TileOp::HouseQr`] (`Qᵀ` with `transpose`) to
    /// the stack of its `parts` tiles: reads `[F, C, B₁, …]`, writes the
    /// updated `[B₁', …]`. When the stack is taller than `F`, only the top
    /// rows of `B₁` take part (those facing the `R` that was factored).
    /// With `lq` the `B`s are read and written transposed: `B ← B·Q`
    /// (`transpose`) or `B ← B·Qᵀ` for the `Q` of an LQ.
    HouseApply {
        /// Rows of `F`.
        rows: u64,
        /// Columns of the `B`s.
        cols: u32,
        /// Reflectors (columns of `F`).
        k: u32,
        /// Number of `B` tiles.
        parts: u32,
        /// `Qᵀ·B` rather than `Q·B`.
        transpose: bool,
        /// The `B`s are read and written transposed.
        lq: bool,
        /// `[row, col, step]` of the updated tile.
        at: [u32; 3],
    },
    /// `Σ scalesᵢ·op(Xᵢ) + shift·I` over its `terms` (0 to 2) input tiles,
    /// with `I` the part of the identity this tile covers.
    Combine {
        /// Input tiles read.
        terms: u32,
        /// Factor of each input.
        scales: [f64; 2],
        /// Whether each input is read transposed.
        trans: [Transpose; 2],
        /// Multiple of the identity added.
        shift: f64,
        /// `[rows, cols]` of the result.
        dims: [u32; 2],
        /// Global row minus global column of the tile's first entry.
        offset: i64,
    },
    /// A tile of the identity matrix: ones where the global row equals the
    /// global column; reads nothing.
    Eye {
        /// `[rows, cols]`.
        dims: [u32; 2],
        /// Global row minus global column of the tile's first entry.
        offset: i64,
    },
    /// Least-squares finish: reads `[[R C]; …]`, the factor of a QR of
    /// `[A B]`, and writes `X` solving `R·X = C` with `R` its top-left `n × n`
    /// and `C` its top-right `n × rhs` corner. Fails with
    /// [`LinalgError::RankDeficient`] when a diagonal entry of `R` is
    /// negligible next to the largest.
    SolveR {
        /// Columns of `A`.
        n: u32,
        /// Columns of `B`.
        rhs: u32,
    },
    /// SVD of an `n × n` upper band matrix of bandwidth `band` given by its
    /// tiles: reads `[R₀, L₀ᵀ, R₁, L₁ᵀ, …, R_last]`, the upper-triangular
    /// diagonal tiles and the transposes of the lower-triangular tiles right
    /// of them (as [`TileOp::HouseQr`] with `lq` leaves them). Writes `[s]`
    /// (a column, largest first) or with `vectors` `[s, U…, V…]`: the tiles
    /// of `U_B` laid out in `rows × n` with square tiles of `band` (rows past
    /// `n` zero), then those of `V_B` in `n × n`, row by row.
    ///
    /// Values only: the band is reduced to bidiagonal form by bulge chasing
    /// and the bidiagonal's values found by shifted QR sweeps, `O(n²·band)`
    /// flops. With vectors: a dense SVD of the band. The task is the only one
    /// running at that point of the graph and uses every core of its
    /// executor.
    BandSvd {
        /// Rows of the whole matrix (tiles of `U`).
        rows: u64,
        /// Order of the band matrix.
        n: u32,
        /// Bandwidth, the tile size.
        band: u32,
        /// Whether `U` and `V` are formed.
        vectors: bool,
    },
    /// Thin SVD of one tile `A = U·diag(s)·Vᵀ`; reads `[A]`, writes `[s]`
    /// (a column) or with `vectors` `[U, s, Vᵀ]`.
    Svd {
        /// `[rows, cols]` of `A`.
        dims: [u32; 2],
        /// Whether `U` and `Vᵀ` are formed.
        vectors: bool,
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
            TileOp::Qr {
                rows,
                cols,
                explicit_q,
                ..
            } => {
                let (m, n) = (rows as f64, f64::from(cols));
                let k = m.min(n);
                let factor = 2.0 * m * n * k - (m + n) * k * k + 2.0 * k.powi(3) / 3.0;
                if explicit_q { 2.0 * factor } else { factor }
            }
            TileOp::SolveR { n, rhs } => f64::from(n) * f64::from(n) * f64::from(rhs),
            TileOp::HouseQr { rows, cols, .. } => {
                let (m, n) = (rows as f64, f64::from(cols));
                let k = m.min(n);
                2.0 * m * n * k - (m + n) * k * k + 2.0 * k.powi(3) / 3.0
            }
            TileOp::HouseApply { rows, cols, k, .. } => {
                4.0 * rows as f64 * f64::from(cols) * f64::from(k)
            }
            TileOp::Eye { dims: [r, c], .. } | TileOp::Combine { dims: [r, c], .. } => {
                f64::from(r) * f64::from(c)
            }
            TileOp::BandSvd {
                n, band, vectors, ..
            } => {
                let (n, b) = (f64::from(n), f64::from(band));
                if vectors {
                    n.powi(3) * (4.0 - 4.0 / 3.0) * 3.0
                } else {
                    12.0 * n * n * b
                }
            }
            TileOp::Svd {
                dims: [m, n],
                vectors,
            } => {
                let (m, n) = (f64::from(m.max(n)), f64::from(m.min(n)));
                // Bidiagonalization plus, with vectors, their accumulation.
                (4.0 * m * n * n - 4.0 * n.powi(3) / 3.0) * if vectors { 3.0 } else { 1.0 }
            }
        }
    }

    fn label(&self) -> String {
        match self {
            TileOp::Gemm { at: [i, j, k], .. } => format!("gemm({i},{j})@{k}"),
            TileOp::Syrk { at: [i, k], .. } => format!("syrk({i},{i})@{k}"),
            TileOp::Trsm { at: [i, j], .. } => format!("trsm({i},{j})"),
            TileOp::Potrf { tile, .. } => format!("potrf({tile},{tile})"),
            TileOp::Qr { at: [l, i], .. } => format!("qr({l},{i})"),
            TileOp::Svd { .. } => "svd".into(),
            TileOp::SolveR { .. } => "solve_r".into(),
            TileOp::HouseQr {
                at: [i, j],
                lq: false,
                ..
            } => format!("geqrt({i},{j})"),
            TileOp::HouseQr { at: [i, j], .. } => format!("gelqt({j},{i})"),
            TileOp::HouseApply {
                at: [i, j, k],
                lq: false,
                ..
            } => format!("ormqr({i},{j})@{k}"),
            TileOp::HouseApply { at: [i, j, k], .. } => format!("ormlq({j},{i})@{k}"),
            TileOp::BandSvd { .. } => "band_svd".into(),
            TileOp::Eye { .. } => "eye".into(),
            TileOp::Combine { .. } => "combine".into(),
        }
    }
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
    /// Number of tiles the operation writes.
    pub fn num_outputs(&self) -> usize {
        match *self {
            TileOp::Qr {
                parts,
                explicit_q: true,
                ..
            } => parts as usize + 1,
            TileOp::Svd { vectors: true, .. } => 3,
            TileOp::HouseQr { .. } => 3,
            TileOp::HouseApply { parts, .. } => parts as usize,
            TileOp::BandSvd {
                vectors: true,
                rows,
                n,
                band,
            } => {
                let tiles = |len: u64| len.div_ceil(u64::from(band.max(1))) as usize;
                let nt = tiles(u64::from(n));
                1 + tiles(rows) * nt + nt * nt
            }
            _ => 1,
        }
    }

    /// Runs the operation on its input tiles and returns the tiles it
    /// writes, in the order the variant lists them.
    pub fn execute(
        &self,
        backend: &dyn TileBackend,
        inputs: Vec<Arc<Tile>>,
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
            _ => self.execute_one(backend, inputs).map(|tile| vec![tile]),
        }
    }

    fn execute_one(
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
            TileOp::SolveR { n, rhs } => {
                expect("solve_r", &inputs, 1)?;
                solve_r(backend, &inputs[0], n as usize, rhs as usize)
            }
            TileOp::Qr { .. }
            | TileOp::Svd { .. }
            | TileOp::HouseQr { .. }
            | TileOp::HouseApply { .. }
            | TileOp::BandSvd { .. }
            | TileOp::Eye { .. }
            | TileOp::Combine { .. } => Err(LinalgError::WrongInputCount {
                operation: "single-output kernel",
                expected: 1,
                got: self.num_outputs(),
            }),
        }
    }
}

fn solve_r(
    backend: &dyn TileBackend,
    factor: &Tile,
    n: usize,
    rhs: usize,
) -> Result<Tile, LinalgError> {
    if factor.nrows() < n || factor.ncols() != n + rhs {
        return Err(crate::error::shape_mismatch(
            "solve_r",
            format!(
                "the factor is {}×{} but R·X = C needs at least {n} rows and {} columns",
                factor.nrows(),
                factor.ncols(),
                n + rhs
            ),
        ));
    }
    let largest = (0..n).map(|i| factor[[i, i]].abs()).fold(0.0, f64::max);
    let tolerance = largest * n as f64 * f64::EPSILON;
    if let Some(column) = (0..n).find(|&i| factor[[i, i]].abs() <= tolerance) {
        return Err(LinalgError::RankDeficient {
            operation: "least squares",
            detail: format!(
                "column {column} of A is (numerically) a combination of the columns before it: \
                 |R[{column},{column}]| = {:e} ≤ {tolerance:e}",
                factor[[column, column]].abs()
            ),
        });
    }
    let r = factor.slice(ndarray::s![..n, ..n]);
    let mut x = tile::to_column_major(factor.slice(ndarray::s![..n, n..]));
    backend.trsm(
        Side::Left,
        Triangle::Upper,
        Transpose::No,
        Diagonal::NonUnit,
        1.0,
        r,
        x.view_mut(),
    )?;
    Ok(x)
}

/// `A = Q·R` of a tall tile by CholeskyQR2: `R₁ = chol(AᵀA)`, `Q₁ = A·R₁⁻¹`,
/// then once more on `Q₁` (`R = R₂·R₁`), so nearly all the work is the
/// products `AᵀA` and triangular solves. The second pass restores
/// orthogonality to rounding level whenever `Q₁` is well conditioned, which is
/// checked: if `‖Q₁ᵀQ₁ − I‖_F > ½` or a Cholesky factorization fails (`A` is
/// ill-conditioned, about κ(A) > 10⁷), `None` tells the caller to use
/// Householder instead.
pub fn cholesky_qr2(
    backend: &dyn TileBackend,
    a: &Tile,
    explicit_q: bool,
) -> Result<Option<(Tile, Option<Tile>)>, LinalgError> {
    let n = a.ncols();
    if a.nrows() < n || n == 0 {
        return Ok(None);
    }
    // Row blocks small enough to stay in cache while each is solved and
    // multiplied: two passes over A in all, none over a Q that is not kept.
    let block = (CHOLQR_BLOCK_BYTES / (8 * n)).max(n);
    let starts: Vec<usize> = (0..a.nrows()).step_by(block).collect();
    let rows = |start: usize| start..(start + block).min(a.nrows());
    // `L⁻ᵀ` as a matrix (n³/3 flops): products by it run at GEMM speed, where
    // a triangular solve against a tall block runs at a third of it. The
    // check of Q₁ below catches the accuracy this could cost.
    let inverse_t = |l: &Tile| -> Result<Tile, LinalgError> {
        let mut x = tile::zeros(n, n);
        x.diag_mut().fill(1.0);
        backend.trsm(
            Side::Left,
            Triangle::Lower,
            Transpose::No,
            Diagonal::NonUnit,
            1.0,
            l.view(),
            x.view_mut(),
        )?;
        Ok(tile::to_column_major(x.t()))
    };
    let mut l1 = tile::zeros(n, n);
    for &start in &starts {
        add_lower_gram(
            backend,
            a.slice(ndarray::s![rows(start), ..]),
            l1.view_mut(),
        )?;
    }
    if backend.potrf(l1.view_mut()).is_err() {
        return Ok(None);
    }
    // Q₁ = A·L₁⁻ᵀ block by block, each block's Gram matrix added while it is
    // in cache; Q₁ is kept only when Q is wanted.
    let l1_inverse_t = inverse_t(&l1)?;
    let mut l2 = tile::zeros(n, n);
    let mut q = explicit_q.then(|| tile::zeros(a.nrows(), n));
    let mut scratch = tile::zeros(block.min(a.nrows()), n);
    for &start in &starts {
        let range = rows(start);
        let mut target = match q.as_mut() {
            Some(q) => q.slice_mut(ndarray::s![range.clone(), ..]),
            None => scratch.slice_mut(ndarray::s![..range.len(), ..]),
        };
        let block = a.slice(ndarray::s![range, ..]);
        times_upper(backend, block, l1_inverse_t.view(), 0.0, target.view_mut())?;
        add_lower_gram(backend, target.view(), l2.view_mut())?;
    }
    let mut departure = 0.0;
    for j in 0..n {
        for i in j..n {
            let d = l2[[i, j]] - if i == j { 1.0 } else { 0.0 };
            departure += if i == j { d * d } else { 2.0 * d * d };
        }
    }
    // NaN compares false: a NaN departure declines too.
    let close = departure.sqrt() <= 0.5;
    if !close || backend.potrf(l2.view_mut()).is_err() {
        return Ok(None);
    }
    // R = R₂·R₁ = (L₁·L₂)ᵀ.
    let mut product = tile::zeros(n, n);
    backend.gemm(
        Transpose::No,
        Transpose::No,
        1.0,
        l1.view(),
        l2.view(),
        0.0,
        product.view_mut(),
    )?;
    let r = tile::to_column_major(product.t());
    // NaN and ∞ in A reach the Gram matrices and fail the tests above; this
    // keeps the promise (finite A, or `None`) should a kernel drop a NaN.
    if tile::first_non_finite(r.view()).is_some() {
        return Ok(None);
    }
    if let Some(q) = q.as_mut() {
        let l2_inverse_t = inverse_t(&l2)?;
        for &start in &starts {
            let range = rows(start);
            let mut block = scratch.slice_mut(ndarray::s![..range.len(), ..]);
            block.assign(&q.slice(ndarray::s![range.clone(), ..]));
            let target = q.slice_mut(ndarray::s![range, ..]);
            times_upper(backend, block.view(), l2_inverse_t.view(), 0.0, target)?;
        }
    }
    Ok(Some((r, q)))
}

/// Row blocks of CholeskyQR2 hold about this many bytes (half a core's L2
/// cache: the block and its product stay there together).
const CHOLQR_BLOCK_BYTES: usize = 1 << 19;

/// Products of CholeskyQR2 split their triangular operand down to blocks of
/// this many columns: below it the saved flops cost more than the smaller
/// products lose (8192×128 tiles, faer: 32 takes 25% off the leaf, 64 18%).
const TRIANGULAR_SPLIT: usize = 32;

/// `G ← G + XᵀX` on the lower triangle of `G` (the strict upper triangle gets
/// partial sums): the triangle is halved recursively, so only blocks of
/// [`TRIANGULAR_SPLIT`] columns on the diagonal are computed in full and
/// nearly half the flops of one product `XᵀX` are saved.
fn add_lower_gram(
    backend: &dyn TileBackend,
    x: ndarray::ArrayView2<'_, f64>,
    mut g: ndarray::ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let n = x.ncols();
    if n <= TRIANGULAR_SPLIT {
        return backend.gemm(Transpose::Yes, Transpose::No, 1.0, x, x, 1.0, g);
    }
    let h = n / 2;
    let (left, right) = (x.slice(ndarray::s![.., ..h]), x.slice(ndarray::s![.., h..]));
    let (g11, g21, g22) = g.multi_slice_mut((
        ndarray::s![..h, ..h],
        ndarray::s![h.., ..h],
        ndarray::s![h.., h..],
    ));
    add_lower_gram(backend, left, g11)?;
    backend.gemm(Transpose::Yes, Transpose::No, 1.0, right, left, 1.0, g21)?;
    add_lower_gram(backend, right, g22)
}

/// `Y ← X·U + β·Y` for an upper triangular `U`, whose zero lower triangle is
/// skipped down to blocks of [`TRIANGULAR_SPLIT`] columns.
fn times_upper(
    backend: &dyn TileBackend,
    x: ndarray::ArrayView2<'_, f64>,
    u: ndarray::ArrayView2<'_, f64>,
    beta: f64,
    mut y: ndarray::ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let n = u.ncols();
    if n <= TRIANGULAR_SPLIT {
        return backend.gemm(Transpose::No, Transpose::No, 1.0, x, u, beta, y);
    }
    let h = n / 2;
    let (first, second) = (x.slice(ndarray::s![.., ..h]), x.slice(ndarray::s![.., h..]));
    let (y1, mut y2) = y.multi_slice_mut((ndarray::s![.., ..h], ndarray::s![.., h..]));
    times_upper(backend, first, u.slice(ndarray::s![..h, ..h]), beta, y1)?;
    // Y₂ = X₁·U₁₂ + X₂·U₂₂ (+ β·Y₂).
    let u12 = u.slice(ndarray::s![..h, h..]);
    backend.gemm(
        Transpose::No,
        Transpose::No,
        1.0,
        first,
        u12,
        beta,
        y2.view_mut(),
    )?;
    times_upper(backend, second, u.slice(ndarray::s![h.., h..]), 1.0, y2)
}

/// Tiles of the same width stacked vertically (the tile itself if only one).
fn stack(inputs: Vec<Arc<Tile>>, cols: usize) -> Result<Tile, LinalgError> {
    if let Some(bad) = inputs.iter().find(|t| t.ncols() != cols) {
        return Err(crate::error::shape_mismatch(
            "qr",
            format!(
                "a stacked tile has {} columns, expected {cols}",
                bad.ncols()
            ),
        ));
    }
    if inputs.len() == 1 {
        return Ok(inputs.into_iter().next().map(take).unwrap_or_default());
    }
    let mut whole = tile::zeros(inputs.iter().map(|t| t.nrows()).sum(), cols);
    let mut row = 0;
    for input in &inputs {
        let height = input.nrows();
        whole
            .slice_mut(ndarray::s![row..row + height, ..])
            .assign(&**input);
        row += height;
    }
    Ok(whole)
}

/// `[B₁; …] ← Qᵀ·[B₁; …]` (or `Q·`) for a factored `F`, `C`; the rows of
/// `B₁` below those facing `F` are passed through.
fn house_apply(mut inputs: Vec<Arc<Tile>>, transpose: bool) -> Result<Vec<Tile>, LinalgError> {
    let parts: Vec<Arc<Tile>> = inputs.split_off(2);
    let (factored, coeff) = (&inputs[0], &inputs[1]);
    let cols = parts.first().map_or(0, |p| p.ncols());
    let below: usize = parts.iter().skip(1).map(|p| p.nrows()).sum();
    let first_rows = parts.first().map_or(0, |p| p.nrows());
    let top = factored
        .nrows()
        .checked_sub(below)
        .filter(|&t| t <= first_rows);
    let Some(top) = top else {
        return Err(crate::error::shape_mismatch(
            "tile qr update",
            format!(
                "the factored stack has {} rows but the tiles to update have {} and {below}",
                factored.nrows(),
                first_rows
            ),
        ));
    };
    // A TS step (an upper-triangular R on top of a tile, T in one block):
    // the reflectors are [I; V₂], which `ts_apply` exploits.
    let ts = parts.len() == 2
        && top == factored.ncols().min(factored.nrows())
        && coeff.dim() == (top, top)
        && parts[1].ncols() == cols
        && (0..top).all(|j| {
            factored
                .slice(ndarray::s![j + 1..top, j])
                .iter()
                .all(|&v| v == 0.0)
        });
    let parts = match ts {
        true => match <[Arc<Tile>; 2]>::try_from(parts) {
            Ok([b1, b2]) => {
                let (mut first, mut second) = (take(b1), take(b2));
                crate::kernels::ts_apply(
                    factored,
                    coeff,
                    first.slice_mut(ndarray::s![..top, ..]),
                    second.view_mut(),
                    transpose,
                );
                return Ok(vec![first, second]);
            }
            Err(parts) => parts,
        },
        false => parts,
    };
    let mut first = parts.first().cloned().map(take).unwrap_or_default();
    let mut stacked = tile::zeros(factored.nrows(), cols);
    stacked
        .slice_mut(ndarray::s![..top, ..])
        .assign(&first.slice(ndarray::s![..top, ..]));
    let mut row = top;
    for part in parts.iter().skip(1) {
        if part.ncols() != cols {
            return Err(crate::error::shape_mismatch(
                "tile qr update",
                format!("tiles of {} and {cols} columns", part.ncols()),
            ));
        }
        stacked
            .slice_mut(ndarray::s![row..row + part.nrows(), ..])
            .assign(&**part);
        row += part.nrows();
    }
    crate::kernels::qr_apply(factored, coeff, &mut stacked, transpose);
    first
        .slice_mut(ndarray::s![..top, ..])
        .assign(&stacked.slice(ndarray::s![..top, ..]));
    let mut out = vec![first];
    let mut row = top;
    for part in parts.iter().skip(1) {
        out.push(tile::to_column_major(
            stacked.slice(ndarray::s![row..row + part.nrows(), ..]),
        ));
        row += part.nrows();
    }
    Ok(out)
}

/// The band matrix `[R₀, L₀ᵀ, R₁, …]` describes (see [`TileOp::BandSvd`]).
fn gather_band(inputs: &[Arc<Tile>], n: usize, b: usize) -> Result<Band, LinalgError> {
    let nt = n.div_ceil(b);
    expect("band svd", inputs, (2 * nt).saturating_sub(1))?;
    let mut band = Band::zeros(n, b);
    for (index, part) in inputs.iter().enumerate() {
        let k = index / 2;
        let (row0, col0) = (k * b, (k + index % 2) * b);
        let width = b.min(n - col0);
        // R: upper triangle of the diagonal tile; Lᵀ: upper triangle of the
        // transposed tile right of it (L's entry (r, c) is Lᵀ's (c, r)).
        let (want_rows, want_cols) = match index % 2 {
            0 => (width, width),
            _ => (width, b.min(n - row0)),
        };
        if part.nrows() > want_rows || part.ncols() != want_cols {
            return Err(crate::error::shape_mismatch(
                "band svd",
                format!(
                    "band part {index} is {}×{}, expected at most {want_rows}×{want_cols}",
                    part.nrows(),
                    part.ncols()
                ),
            ));
        }
        for c in 0..part.ncols() {
            for r in 0..part.nrows().min(c + 1) {
                let v = part[[r, c]];
                if index % 2 == 0 {
                    band.set(row0 + r, col0 + c, v);
                } else {
                    band.set(row0 + c, col0 + r, v);
                }
            }
        }
    }
    if let Some((row, col, value)) = band.first_non_finite() {
        return Err(LinalgError::NonFinite {
            matrix: "band form of A",
            row,
            col,
            value,
        });
    }
    Ok(band)
}

/// [`TileOp::BandSvd`].
fn band_svd(
    backend: &dyn TileBackend,
    inputs: &[Arc<Tile>],
    rows: usize,
    n: usize,
    b: usize,
    vectors: bool,
) -> Result<Vec<Tile>, LinalgError> {
    let b = b.max(1);
    let band = gather_band(inputs, n, b)?;
    let column = |s: Vec<f64>| {
        Tile::from_shape_vec((s.len(), 1), s)
            .map_err(|e| crate::error::shape_mismatch("band svd", format!("singular values: {e}")))
    };
    // The task runs alone at the end of the graph: use the executor's cores.
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    if !vectors {
        let (d, e) = band.into_bidiagonal_on(threads);
        return Ok(vec![column(bidiagonal_singular_values(d, e)?)?]);
    }
    let parts = backend.svd_whole(band.to_dense(), threads, true)?;
    let (Some(u), Some(vt)) = (parts.u, parts.vt) else {
        return Err(LinalgError::NoConvergence {
            operation: "band svd",
            detail: "the dense SVD returned no vectors".into(),
        });
    };
    let mut out = vec![column(parts.s)?];
    let (mt, nt) = (rows.div_ceil(b), n.div_ceil(b));
    for i in 0..mt {
        for j in 0..nt {
            let (r0, c0) = (i * b, j * b);
            let (h, w) = (b.min(rows - r0), b.min(n - c0));
            let mut t = tile::zeros(h, w);
            if r0 < n {
                let live = h.min(n - r0);
                t.slice_mut(ndarray::s![..live, ..])
                    .assign(&u.slice(ndarray::s![r0..r0 + live, c0..c0 + w]));
            }
            out.push(t);
        }
    }
    for i in 0..nt {
        for j in 0..nt {
            let (r0, c0) = (i * b, j * b);
            let (h, w) = (b.min(n - r0), b.min(n - c0));
            out.push(tile::to_column_major(
                vt.slice(ndarray::s![c0..c0 + w, r0..r0 + h]).t(),
            ));
        }
    }
    Ok(out)
}

/// QR of tiles stacked vertically; `Q` is cut back into one block per input.
/// With `input_row`, non-finite values of the stack are an error on `A`.
fn qr_stacked(
    backend: &dyn TileBackend,
    inputs: Vec<Arc<Tile>>,
    (cols, parts): (usize, usize),
    (explicit_q, method): (bool, QrMethod),
    input_row: Option<u64>,
) -> Result<Vec<Tile>, LinalgError> {
    expect("qr", &inputs, parts)?;
    let heights: Vec<usize> = inputs.iter().map(|t| t.nrows()).collect();
    let stacked = stack(inputs, cols)?;
    // A NaN or ∞ in the tile makes CholeskyQR2 decline (its Gram matrix is
    // not finite), so the scan below runs only on the fallback path.
    let fast = match method {
        QrMethod::CholeskyQr2 => cholesky_qr2(backend, &stacked, explicit_q)?,
        _ => None,
    };
    let (r, q) = match fast {
        Some(factors) => factors,
        None => {
            if let Some(row) = input_row {
                tile::check_finite("A", stacked.view(), (row as usize, 0))?;
            }
            backend.qr(stacked, explicit_q)?
        }
    };
    let mut out = Vec::with_capacity(parts + 1);
    if let Some(q) = q {
        if parts == 1 {
            out.push(q);
        } else {
            let mut row = 0;
            for height in heights {
                out.push(tile::to_column_major(
                    q.slice(ndarray::s![row..row + height, ..]),
                ));
                row += height;
            }
        }
    }
    out.push(r);
    Ok(out)
}
