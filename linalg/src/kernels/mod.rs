//! Tile kernels behind one trait, with a pure-Rust backend (faer, the default)
//! and an OpenBLAS backend (cargo feature `openblas`).
//!
//! Kernels run single-threaded: parallelism comes from running many tiles at
//! once, and a multi-threaded kernel inside a parallel executor oversubscribes
//! the cores. The whole-matrix calls (`*_whole`) are the references that tiled
//! runs are measured against; they use `threads` threads.

pub mod band;
mod faer_backend;
#[cfg(feature = "openblas")]
mod openblas_backend;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::tile::Tile;
use serde::{Deserialize, Serialize};

use crate::LinalgError;
use crate::error::shape_mismatch;

pub use faer_backend::FaerBackend;
pub(crate) use faer_backend::{qr_apply, qr_factored, ts_apply};
#[cfg(feature = "openblas")]
pub use openblas_backend::{
    OpenBlasBackend, better_core_type as openblas_better_core_type, core_name as openblas_core_name,
};

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transpose {
    /// `A`.
    No,
    /// `Aᵀ`.
    Yes,
}

/// Which side a triangular matrix multiplies from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// `op(A)·X = B`.
    Left,
    /// `X·op(A) = B`.
    Right,
}

/// Which triangle of a matrix holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Triangle {
    /// On and below the diagonal.
    Lower,
    /// On and above the diagonal.
    Upper,
}

/// Whether a triangular matrix has an implicit unit diagonal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Diagonal {
    /// The stored diagonal is used.
    NonUnit,
    /// The diagonal is taken to be all ones and not read.
    Unit,
}

/// The available backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BackendKind {
    /// faer, pure Rust; always built.
    Faer,
    /// OpenBLAS through LAPACK/CBLAS; needs the `openblas` cargo feature.
    #[cfg_attr(feature = "clap", value(name = "openblas"))]
    OpenBlas,
}

impl BackendKind {
    /// The backend's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Faer => "faer",
            BackendKind::OpenBlas => "openblas",
        }
    }

    /// The backend's kernels, or an error naming the feature that enables them.
    pub fn kernels(self) -> Result<&'static dyn TileBackend, LinalgError> {
        match self {
            BackendKind::Faer => Ok(&FaerBackend),
            #[cfg(feature = "openblas")]
            BackendKind::OpenBlas => Ok(&OpenBlasBackend),
            #[cfg(not(feature = "openblas"))]
            BackendKind::OpenBlas => Err(LinalgError::BackendUnavailable {
                backend: "openblas",
                feature: "openblas",
            }),
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = wukong_dag::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "faer" => Ok(BackendKind::Faer),
            "openblas" => Ok(BackendKind::OpenBlas),
            other => Err(wukong_dag::UnknownName {
                what: "backend",
                given: other.to_owned(),
                expected: "faer or openblas",
            }),
        }
    }
}

pub(crate) mod sealed {
    use ndarray::{ArrayView2, ArrayViewMut2};

    use super::{BackendKind, Diagonal, Side, Transpose, Triangle};
    use crate::LinalgError;
    use crate::tile::Tile;

    /// What a backend implements. Callers outside this crate cannot name this
    /// trait, so they cannot skip the shape checks of [`super::TileBackend`],
    /// which keeps the BLAS backend's pointer arithmetic in bounds.
    pub trait Raw: Send + Sync {
        fn raw_kind(&self) -> BackendKind;

        /// `C ← α·op(A)·op(B) + β·C` on `threads` threads; shapes are checked.
        #[allow(clippy::too_many_arguments)]
        fn raw_gemm(
            &self,
            threads: usize,
            trans_a: Transpose,
            trans_b: Transpose,
            alpha: f64,
            a: &ArrayView2<'_, f64>,
            b: &ArrayView2<'_, f64>,
            beta: f64,
            c: &mut ArrayViewMut2<'_, f64>,
        ) -> Result<(), LinalgError>;

        /// Single-threaded SYRK on one triangle; shapes are checked.
        fn raw_syrk(
            &self,
            triangle: Triangle,
            trans: Transpose,
            alpha: f64,
            a: &ArrayView2<'_, f64>,
            beta: f64,
            c: &mut ArrayViewMut2<'_, f64>,
        ) -> Result<(), LinalgError>;

        /// TRSM on `threads` threads; shapes are checked.
        #[allow(clippy::too_many_arguments)]
        fn raw_trsm(
            &self,
            threads: usize,
            side: Side,
            triangle: Triangle,
            trans: Transpose,
            diagonal: Diagonal,
            alpha: f64,
            a: &ArrayView2<'_, f64>,
            b: &mut ArrayViewMut2<'_, f64>,
        ) -> Result<(), LinalgError>;

        /// Lower Cholesky factor in place on `threads` threads; `a` is square.
        /// The strict upper triangle may be left as it was.
        fn raw_cholesky(
            &self,
            threads: usize,
            a: &mut ArrayViewMut2<'_, f64>,
        ) -> Result<(), LinalgError>;

        /// Householder QR of a column-major contiguous `m×n` matrix on
        /// `threads` threads: `R` (`k×n`, upper, `k = min(m, n)`) and, when
        /// asked, the explicit thin `Q` (`m×k`).
        fn raw_qr(
            &self,
            threads: usize,
            a: Tile,
            explicit_q: bool,
        ) -> Result<(Tile, Option<Tile>), LinalgError>;

        /// Thin SVD of a column-major contiguous matrix on `threads` threads.
        fn raw_svd(
            &self,
            threads: usize,
            a: Tile,
            vectors: bool,
        ) -> Result<super::SvdParts, LinalgError>;
    }
}

/// A thin singular value decomposition `A = U·diag(s)·Vᵀ` of an `m×n` matrix,
/// `k = min(m, n)`.
#[derive(Debug, Clone)]
pub struct SvdParts {
    /// Singular values, non-negative and in non-increasing order (`k`).
    pub s: Vec<f64>,
    /// Left singular vectors (`m×k`), when asked for.
    pub u: Option<Tile>,
    /// Right singular vectors, transposed (`k×n`), when asked for.
    pub vt: Option<Tile>,
}

/// Dense kernels on tiles. All take views of any layout; column-major views are
/// the fast path. Each checks its operands' shapes and reports a mismatch as an
/// error instead of panicking. Tile kernels run on one thread; the `*_whole`
/// calls are the multi-threaded whole-matrix references.
pub trait TileBackend: sealed::Raw {
    /// Which backend this is.
    fn kind(&self) -> BackendKind {
        self.raw_kind()
    }

    /// `C ← α·op(A)·op(B) + β·C`. With `β = 0`, `C` is not read (NaN in it is ignored).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        trans_a: Transpose,
        trans_b: Transpose,
        alpha: f64,
        a: ArrayView2<'_, f64>,
        b: ArrayView2<'_, f64>,
        beta: f64,
        mut c: ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError> {
        check_gemm(trans_a, trans_b, &a, &b, &c)?;
        self.raw_gemm(1, trans_a, trans_b, alpha, &a, &b, beta, &mut c)
    }

    /// `C ← α·op(A)·op(A)ᵀ + β·C` on the `triangle` of `C` only; the other
    /// strict triangle is left untouched.
    fn syrk(
        &self,
        triangle: Triangle,
        trans: Transpose,
        alpha: f64,
        a: ArrayView2<'_, f64>,
        beta: f64,
        mut c: ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError> {
        check_syrk(trans, &a, &c)?;
        self.raw_syrk(triangle, trans, alpha, &a, beta, &mut c)
    }

    /// Solves `op(A)·X = α·B` (left) or `X·op(A) = α·B` (right) for `X`, with
    /// `A` triangular, and overwrites `B` with `X`.
    #[allow(clippy::too_many_arguments)]
    fn trsm(
        &self,
        side: Side,
        triangle: Triangle,
        trans: Transpose,
        diagonal: Diagonal,
        alpha: f64,
        a: ArrayView2<'_, f64>,
        mut b: ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError> {
        self.trsm_whole(side, triangle, trans, diagonal, alpha, a, b.view_mut(), 1)
    }

    /// [`trsm`](Self::trsm) on `threads` threads: the reference for tiled
    /// triangular solves.
    #[allow(clippy::too_many_arguments)]
    fn trsm_whole(
        &self,
        side: Side,
        triangle: Triangle,
        trans: Transpose,
        diagonal: Diagonal,
        alpha: f64,
        a: ArrayView2<'_, f64>,
        mut b: ArrayViewMut2<'_, f64>,
        threads: usize,
    ) -> Result<(), LinalgError> {
        check_trsm(side, &a, &b)?;
        self.raw_trsm(
            threads.max(1),
            side,
            triangle,
            trans,
            diagonal,
            alpha,
            &a,
            &mut b,
        )
    }

    /// Lower Cholesky factor in place: `A = L·Lᵀ`, `L` overwrites the lower
    /// triangle and the strict upper triangle is set to zero; only the lower
    /// triangle of `A` is read. A non-positive pivot gives
    /// [`LinalgError::NotPositiveDefinite`] with `tile: 0` and the pivot's index
    /// (callers that factor a tile of a larger matrix rewrite it).
    fn potrf(&self, a: ArrayViewMut2<'_, f64>) -> Result<(), LinalgError> {
        self.cholesky_whole(a, 1)
    }

    /// Householder QR `A = Q·R` of one tile: `R` is `k×n` upper triangular
    /// (`k = min(m, n)`, zeros below the diagonal) and, with `explicit_q`,
    /// `Q` is the `m×k` matrix with orthonormal columns. Takes the tile by
    /// value and factors it in place when it is column-major.
    fn qr(&self, a: Tile, explicit_q: bool) -> Result<(Tile, Option<Tile>), LinalgError> {
        self.qr_whole(a, 1, explicit_q)
    }

    /// [`qr`](Self::qr) of a whole matrix on `threads` threads: the
    /// reference for TSQR and tiled QR.
    fn qr_whole(
        &self,
        a: Tile,
        threads: usize,
        explicit_q: bool,
    ) -> Result<(Tile, Option<Tile>), LinalgError> {
        check_finite_operand("qr", &a)?;
        self.raw_qr(threads.max(1), column_major_owned(a), explicit_q)
    }

    /// Thin SVD of one tile on one thread; singular values only unless
    /// `vectors`. Fails with [`LinalgError::NoConvergence`] in the rare case
    /// the iteration does not converge.
    fn svd(&self, a: Tile, vectors: bool) -> Result<SvdParts, LinalgError> {
        self.svd_whole(a, 1, vectors)
    }

    /// [`svd`](Self::svd) of a whole matrix on `threads` threads: the
    /// reference for the tiled SVDs.
    fn svd_whole(&self, a: Tile, threads: usize, vectors: bool) -> Result<SvdParts, LinalgError> {
        check_finite_operand("svd", &a)?;
        self.raw_svd(threads.max(1), column_major_owned(a), vectors)
    }

    /// Whole-matrix `A·B` on `threads` threads: the reference for tiled GEMM.
    fn matmul_whole(
        &self,
        a: ArrayView2<'_, f64>,
        b: ArrayView2<'_, f64>,
        threads: usize,
    ) -> Result<Array2<f64>, LinalgError> {
        check_matmul(&a, &b)?;
        let mut c = crate::tile::zeros(a.nrows(), b.ncols());
        self.raw_gemm(
            threads.max(1),
            Transpose::No,
            Transpose::No,
            1.0,
            &a,
            &b,
            0.0,
            &mut c.view_mut(),
        )?;
        Ok(c)
    }

    /// Whole-matrix lower Cholesky factor on `threads` threads, as
    /// [`potrf`](Self::potrf) does on one: the reference for tiled Cholesky.
    fn cholesky_whole(
        &self,
        mut a: ArrayViewMut2<'_, f64>,
        threads: usize,
    ) -> Result<(), LinalgError> {
        check_square("cholesky", a.nrows(), a.ncols())?;
        self.raw_cholesky(threads.max(1), &mut a)?;
        zero_strict_upper(a);
        Ok(())
    }
}

impl<T: sealed::Raw> TileBackend for T {}

fn op_shape(view: &ArrayView2<'_, f64>, trans: Transpose) -> (usize, usize) {
    match trans {
        Transpose::No => (view.nrows(), view.ncols()),
        Transpose::Yes => (view.ncols(), view.nrows()),
    }
}

fn check_gemm(
    trans_a: Transpose,
    trans_b: Transpose,
    a: &ArrayView2<'_, f64>,
    b: &ArrayView2<'_, f64>,
    c: &ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let (m, k) = op_shape(a, trans_a);
    let (k2, n) = op_shape(b, trans_b);
    if k != k2 || c.dim() != (m, n) {
        return Err(shape_mismatch(
            "gemm",
            format!(
                "op(A) is {m}×{k}, op(B) is {k2}×{n}, C is {}×{}",
                c.nrows(),
                c.ncols()
            ),
        ));
    }
    Ok(())
}

fn check_syrk(
    trans: Transpose,
    a: &ArrayView2<'_, f64>,
    c: &ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let (n, k) = op_shape(a, trans);
    if c.dim() != (n, n) {
        return Err(shape_mismatch(
            "syrk",
            format!(
                "op(A) is {n}×{k}, so C must be {n}×{n}, but it is {}×{}",
                c.nrows(),
                c.ncols()
            ),
        ));
    }
    Ok(())
}

fn check_trsm(
    side: Side,
    a: &ArrayView2<'_, f64>,
    b: &ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let needed = match side {
        Side::Left => b.nrows(),
        Side::Right => b.ncols(),
    };
    if a.nrows() != a.ncols() || a.nrows() != needed {
        return Err(shape_mismatch(
            "trsm",
            format!(
                "A is {}×{}, B is {}×{}; A must be square and match B's {} dimension",
                a.nrows(),
                a.ncols(),
                b.nrows(),
                b.ncols(),
                if side == Side::Left { "row" } else { "column" }
            ),
        ));
    }
    Ok(())
}

/// The matrix itself when it is column-major and contiguous, else a copy that is.
fn column_major_owned(a: Tile) -> Tile {
    if a.t().is_standard_layout() {
        a
    } else {
        crate::tile::to_column_major(a.view())
    }
}

/// Decompositions cannot report a NaN's position once it has spread, so
/// their operands are checked first.
fn check_finite_operand(operation: &'static str, a: &Tile) -> Result<(), LinalgError> {
    crate::tile::check_finite(operation, a.view(), (0, 0))
}

fn check_square(operation: &'static str, rows: usize, cols: usize) -> Result<(), LinalgError> {
    if rows != cols {
        return Err(shape_mismatch(
            operation,
            format!("the matrix must be square, it is {rows}×{cols}"),
        ));
    }
    Ok(())
}

fn check_matmul(a: &ArrayView2<'_, f64>, b: &ArrayView2<'_, f64>) -> Result<(), LinalgError> {
    if a.ncols() != b.nrows() {
        return Err(shape_mismatch(
            "matmul",
            format!(
                "A is {}×{} and B is {}×{}",
                a.nrows(),
                a.ncols(),
                b.nrows(),
                b.ncols()
            ),
        ));
    }
    Ok(())
}

/// Sets the strict upper triangle of a square view to zero.
fn zero_strict_upper(mut a: ArrayViewMut2<'_, f64>) {
    let n = a.ncols();
    for j in 1..n {
        for i in 0..j.min(a.nrows()) {
            a[[i, j]] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests;
