//! The operation vocabulary of the tiled algorithms: what each task of a
//! graph computes, its inputs and outputs, its cost and its label. How each
//! runs is in `execute` (one dispatch) and `composite` (the kernels built
//! from several backend calls: CholeskyQR2, Householder stacks, band SVD).

use serde::{Deserialize, Serialize};
use wukong_dag::Operation;

mod composite;
mod execute;

pub use composite::cholesky_qr2;

use crate::flops;
use crate::kernels::{Diagonal, Side, Transpose, Triangle};

/// How the QR of a tall tile is computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum QrMethod {
    /// Householder reflections: backward stable for any input.
    Householder,
    /// CholeskyQR2 ([`cholesky_qr2`], the default): matrix products only, so
    /// 1.4–1.6× faster on tall tiles; a tile it cannot factor accurately (κ
    /// above about 10⁷) falls back to Householder, so the result is as
    /// accurate either way.
    #[default]
    #[cfg_attr(
        feature = "clap",
        value(
            alias = "cholqr2",
            help = "CholeskyQR2 (matrix products only), falling back to Householder where it cannot be accurate"
        )
    )]
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
        let len = |n: u32| n as usize;
        match *self {
            TileOp::Gemm {
                dims: [m, n, k], ..
            } => flops::gemm(len(m), len(n), len(k)),
            TileOp::Syrk { dims: [n, k], .. } => flops::syrk(len(n), len(k)),
            TileOp::Trsm {
                side, dims: [m, n], ..
            } => match side {
                Side::Left => flops::trsm(len(m), len(n)),
                Side::Right => flops::trsm(len(n), len(m)),
            },
            TileOp::Potrf { n, .. } => flops::cholesky(len(n)),
            TileOp::Qr {
                rows,
                cols,
                explicit_q,
                ..
            } => flops::qr(rows as usize, len(cols)) * if explicit_q { 2.0 } else { 1.0 },
            TileOp::SolveR { n, rhs } => flops::trsm(len(n), len(rhs)),
            TileOp::HouseQr { rows, cols, .. } => flops::qr(rows as usize, len(cols)),
            TileOp::HouseApply { rows, cols, k, .. } => {
                // Applying k reflectors to a rows×cols block: two products.
                2.0 * flops::gemm(rows as usize, len(cols), len(k))
            }
            TileOp::Eye { dims: [r, c], .. } | TileOp::Combine { dims: [r, c], .. } => {
                f64::from(r) * f64::from(c)
            }
            TileOp::BandSvd {
                n, band, vectors, ..
            } => flops::band_svd(len(n), len(band), vectors),
            TileOp::Svd {
                dims: [m, n],
                vectors,
            } => flops::svd(len(m), len(n), vectors),
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
}
