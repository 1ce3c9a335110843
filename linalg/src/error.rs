/// What went wrong in a linear-algebra operation. Every variant names the bad
/// value, so a user can find it without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinalgError {
    /// A matrix dimension or tile size is zero.
    #[error("{what} must be positive, got 0")]
    ZeroSize {
        /// Which size (e.g. `rows`, `tile size`).
        what: &'static str,
    },
    /// Operand shapes do not conform.
    #[error("shape mismatch in {operation}: {detail}")]
    ShapeMismatch {
        /// The operation.
        operation: &'static str,
        /// Which dimensions disagree and their values.
        detail: String,
    },
    /// An input holds NaN or an infinity.
    #[error("{matrix} holds a non-finite value {value} at row {row}, column {col}")]
    NonFinite {
        /// Which operand.
        matrix: &'static str,
        /// Row of the value in the whole matrix.
        row: usize,
        /// Column of the value in the whole matrix.
        col: usize,
        /// The value.
        value: f64,
    },
    /// Cholesky met a pivot that is not positive: the matrix is not positive definite.
    #[error(
        "the matrix is not positive definite: the pivot at row {row} (tile ({tile}, {tile}), local pivot {pivot}) is not positive"
    )]
    NotPositiveDefinite {
        /// Index of the diagonal tile, in tile units.
        tile: usize,
        /// Index of the failing pivot inside that tile.
        pivot: usize,
        /// Index of the failing pivot in the whole matrix.
        row: usize,
    },
    /// An iterative decomposition (the SVD) did not converge.
    #[error("{operation} did not converge{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    NoConvergence {
        /// The operation.
        operation: &'static str,
        /// What the library reported.
        detail: String,
    },
    /// A matrix is rank deficient where the operation needs full rank.
    #[error("{operation}: the matrix is rank deficient: {detail}")]
    RankDeficient {
        /// The operation.
        operation: &'static str,
        /// Which pivot or singular value is (numerically) zero.
        detail: String,
    },
    /// The requested kernel backend was not compiled in.
    #[error("the {backend} backend is not available: rebuild with `--features {feature}`")]
    BackendUnavailable {
        /// The backend.
        backend: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A task received the wrong number of input tiles (a malformed graph).
    #[error("{operation} expects {expected} input tiles, got {got}")]
    WrongInputCount {
        /// The operation.
        operation: &'static str,
        /// Inputs expected.
        expected: usize,
        /// Inputs given.
        got: usize,
    },
    /// Reading or writing a `.npy` file failed, or the file holds no matrix.
    #[error("cannot {action} {}: {problem}", path.display())]
    Npy {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: crate::npy::NpyError,
    },
    /// A matrix that must be symmetric is not.
    #[error(
        "{matrix} is not symmetric: entry ({row}, {col}) is {value} but entry ({col}, {row}) is {mirror} (counted from 0)"
    )]
    NotSymmetric {
        /// Which operand.
        matrix: &'static str,
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        col: usize,
        /// The entry.
        value: f64,
        /// Its mirror image across the diagonal.
        mirror: f64,
    },
    /// The task graph could not be built.
    #[error(transparent)]
    Dag(#[from] wukong_dag::DagError),
}

pub(crate) fn shape_mismatch(operation: &'static str, detail: String) -> LinalgError {
    LinalgError::ShapeMismatch { operation, detail }
}
