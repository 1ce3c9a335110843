//! Tile kernels behind one trait, with a pure-Rust backend (faer, the default)
//! and an OpenBLAS backend (cargo feature `openblas`).
//!
//! Kernels run single-threaded: parallelism comes from running many tiles at
//! once, and a multi-threaded kernel inside a parallel executor oversubscribes
//! the cores. The whole-matrix calls (`*_whole`) are the references that tiled
//! runs are measured against; they use `threads` threads.

mod faer_backend;
#[cfg(feature = "openblas")]
mod openblas_backend;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use serde::{Deserialize, Serialize};

use crate::LinalgError;
use crate::error::shape_mismatch;

pub use faer_backend::FaerBackend;
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
pub enum BackendKind {
    /// faer, pure Rust; always built.
    Faer,
    /// OpenBLAS through LAPACK/CBLAS; needs the `openblas` cargo feature.
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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "faer" => Ok(BackendKind::Faer),
            "openblas" => Ok(BackendKind::OpenBlas),
            other => Err(format!(
                "unknown backend `{other}`: expected faer or openblas"
            )),
        }
    }
}

/// Dense kernels on tiles. All take views of any layout; column-major views are
/// the fast path. Each checks its operands' shapes and reports a mismatch as an
/// error instead of panicking.
pub trait TileBackend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

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
        c: ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError>;

    /// `C ← α·op(A)·op(A)ᵀ + β·C` on the `triangle` of `C` only; the other
    /// strict triangle is left untouched.
    fn syrk(
        &self,
        triangle: Triangle,
        trans: Transpose,
        alpha: f64,
        a: ArrayView2<'_, f64>,
        beta: f64,
        c: ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError>;

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
        b: ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError>;

    /// Lower Cholesky factor in place: `A = L·Lᵀ`, `L` overwrites the lower
    /// triangle and the strict upper triangle is set to zero. A non-positive
    /// pivot gives [`LinalgError::NotPositiveDefinite`] with `tile: 0` and the
    /// pivot's index (callers that factor a tile of a larger matrix rewrite it).
    fn potrf(&self, a: ArrayViewMut2<'_, f64>) -> Result<(), LinalgError>;

    /// Whole-matrix `A·B` on `threads` threads: the reference for tiled GEMM.
    fn matmul_whole(
        &self,
        a: ArrayView2<'_, f64>,
        b: ArrayView2<'_, f64>,
        threads: usize,
    ) -> Result<Array2<f64>, LinalgError>;

    /// Whole-matrix lower Cholesky factor on `threads` threads: the reference
    /// for tiled Cholesky. `a` is overwritten with `L`.
    fn cholesky_whole(&self, a: ArrayViewMut2<'_, f64>, threads: usize) -> Result<(), LinalgError>;
}

fn op_shape(view: &ArrayView2<'_, f64>, trans: Transpose) -> (usize, usize) {
    match trans {
        Transpose::No => (view.nrows(), view.ncols()),
        Transpose::Yes => (view.ncols(), view.nrows()),
    }
}

pub(crate) fn check_gemm(
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

pub(crate) fn check_syrk(
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

pub(crate) fn check_trsm(
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

pub(crate) fn check_square(
    operation: &'static str,
    rows: usize,
    cols: usize,
) -> Result<(), LinalgError> {
    if rows != cols {
        return Err(shape_mismatch(
            operation,
            format!("the matrix must be square, it is {rows}×{cols}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_matmul(
    a: &ArrayView2<'_, f64>,
    b: &ArrayView2<'_, f64>,
) -> Result<(), LinalgError> {
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
pub(crate) fn zero_strict_upper(mut a: ArrayViewMut2<'_, f64>) {
    let n = a.ncols();
    for j in 1..n {
        for i in 0..j.min(a.nrows()) {
            a[[i, j]] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests;
