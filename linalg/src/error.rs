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
    /// An error that an executor in another process reported and that has
    /// no typed form here (a file or graph error, which kernels never raise).
    #[error("{message}")]
    Reported {
        /// The error's message.
        message: String,
    },
}

pub(crate) fn shape_mismatch(operation: &'static str, detail: String) -> LinalgError {
    LinalgError::ShapeMismatch { operation, detail }
}

/// How a [`LinalgError`] travels from an executor in another process to the
/// driver: the same variants with owned names. Names are interned on the way
/// back, each distinct one once (they are operation and matrix names, a few
/// dozen at most).
mod wire {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};

    use serde::{Deserialize, Serialize};

    use super::LinalgError;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub(super) enum Wire {
        ZeroSize {
            what: String,
        },
        ShapeMismatch {
            operation: String,
            detail: String,
        },
        NonFinite {
            matrix: String,
            row: usize,
            col: usize,
            #[serde(with = "as_text")]
            value: f64,
        },
        NotPositiveDefinite {
            tile: usize,
            pivot: usize,
            row: usize,
        },
        NoConvergence {
            operation: String,
            detail: String,
        },
        RankDeficient {
            operation: String,
            detail: String,
        },
        BackendUnavailable {
            backend: String,
            feature: String,
        },
        WrongInputCount {
            operation: String,
            expected: usize,
            got: usize,
        },
        NotSymmetric {
            matrix: String,
            row: usize,
            col: usize,
            #[serde(with = "as_text")]
            value: f64,
            #[serde(with = "as_text")]
            mirror: f64,
        },
        Reported {
            message: String,
        },
    }

    /// Values as text, so that NaN and infinities survive JSON.
    mod as_text {
        use serde::{Deserialize, Deserializer, Serializer};

        pub(super) fn serialize<S: Serializer>(
            value: &f64,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.collect_str(value)
        }

        pub(super) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<f64, D::Error> {
            String::deserialize(deserializer)?
                .parse()
                .map_err(serde::de::Error::custom)
        }
    }

    fn intern(name: String) -> &'static str {
        static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut names = NAMES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(known) = names.get(name.as_str()) {
            return known;
        }
        let leaked: &'static str = Box::leak(name.into_boxed_str());
        names.insert(leaked);
        leaked
    }

    impl<'de> Deserialize<'de> for LinalgError {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            Wire::deserialize(deserializer).map(LinalgError::from)
        }
    }

    impl Serialize for LinalgError {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            Wire::from(self).serialize(serializer)
        }
    }

    impl From<&LinalgError> for Wire {
        fn from(error: &LinalgError) -> Self {
            use LinalgError as E;
            let own = |name: &str| name.to_owned();
            match *error {
                E::ZeroSize { what } => Wire::ZeroSize { what: own(what) },
                E::ShapeMismatch {
                    operation,
                    ref detail,
                } => Wire::ShapeMismatch {
                    operation: own(operation),
                    detail: detail.clone(),
                },
                E::NonFinite {
                    matrix,
                    row,
                    col,
                    value,
                } => Wire::NonFinite {
                    matrix: own(matrix),
                    row,
                    col,
                    value,
                },
                E::NotPositiveDefinite { tile, pivot, row } => {
                    Wire::NotPositiveDefinite { tile, pivot, row }
                }
                E::NoConvergence {
                    operation,
                    ref detail,
                } => Wire::NoConvergence {
                    operation: own(operation),
                    detail: detail.clone(),
                },
                E::RankDeficient {
                    operation,
                    ref detail,
                } => Wire::RankDeficient {
                    operation: own(operation),
                    detail: detail.clone(),
                },
                E::BackendUnavailable { backend, feature } => Wire::BackendUnavailable {
                    backend: own(backend),
                    feature: own(feature),
                },
                E::WrongInputCount {
                    operation,
                    expected,
                    got,
                } => Wire::WrongInputCount {
                    operation: own(operation),
                    expected,
                    got,
                },
                E::NotSymmetric {
                    matrix,
                    row,
                    col,
                    value,
                    mirror,
                } => Wire::NotSymmetric {
                    matrix: own(matrix),
                    row,
                    col,
                    value,
                    mirror,
                },
                E::Npy { .. } | E::Dag(_) | E::Reported { .. } => Wire::Reported {
                    message: error.to_string(),
                },
            }
        }
    }

    impl From<Wire> for LinalgError {
        fn from(wire: Wire) -> Self {
            use LinalgError as E;
            match wire {
                Wire::ZeroSize { what } => E::ZeroSize { what: intern(what) },
                Wire::ShapeMismatch { operation, detail } => E::ShapeMismatch {
                    operation: intern(operation),
                    detail,
                },
                Wire::NonFinite {
                    matrix,
                    row,
                    col,
                    value,
                } => E::NonFinite {
                    matrix: intern(matrix),
                    row,
                    col,
                    value,
                },
                Wire::NotPositiveDefinite { tile, pivot, row } => {
                    E::NotPositiveDefinite { tile, pivot, row }
                }
                Wire::NoConvergence { operation, detail } => E::NoConvergence {
                    operation: intern(operation),
                    detail,
                },
                Wire::RankDeficient { operation, detail } => E::RankDeficient {
                    operation: intern(operation),
                    detail,
                },
                Wire::BackendUnavailable { backend, feature } => E::BackendUnavailable {
                    backend: intern(backend),
                    feature: intern(feature),
                },
                Wire::WrongInputCount {
                    operation,
                    expected,
                    got,
                } => E::WrongInputCount {
                    operation: intern(operation),
                    expected,
                    got,
                },
                Wire::NotSymmetric {
                    matrix,
                    row,
                    col,
                    value,
                    mirror,
                } => E::NotSymmetric {
                    matrix: intern(matrix),
                    row,
                    col,
                    value,
                    mirror,
                },
                Wire::Reported { message } => E::Reported { message },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::LinalgError;

    fn round_trip(error: &LinalgError) -> LinalgError {
        serde_json::from_slice(&serde_json::to_vec(error).unwrap()).unwrap()
    }

    #[test]
    fn errors_cross_processes_with_their_variant_and_message() {
        let cases = [
            LinalgError::NotPositiveDefinite {
                tile: 2,
                pivot: 44,
                row: 300,
            },
            LinalgError::ShapeMismatch {
                operation: "gemm",
                detail: "A is 3×4, B is 5×6".into(),
            },
            LinalgError::NonFinite {
                matrix: "A",
                row: 17,
                col: 4,
                value: f64::INFINITY,
            },
        ];
        for error in &cases {
            let back = round_trip(error);
            assert_eq!(back.to_string(), error.to_string());
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(error));
        }
        assert!(matches!(
            round_trip(&cases[0]),
            LinalgError::NotPositiveDefinite {
                tile: 2,
                pivot: 44,
                row: 300
            }
        ));
        // Names are interned once: the same operation comes back as the same string.
        let (
            LinalgError::ShapeMismatch { operation: a, .. },
            LinalgError::ShapeMismatch { operation: b, .. },
        ) = (round_trip(&cases[1]), round_trip(&cases[1]))
        else {
            panic!("not a shape mismatch");
        };
        assert!(std::ptr::eq(a, b));
        // A graph error, which no kernel raises, keeps its message.
        let dag = LinalgError::Dag(wukong_dag::DagError::Cycle {
            task: wukong_dag::TaskId(3),
            label: "potrf".into(),
        });
        let back = round_trip(&dag);
        assert!(matches!(&back, LinalgError::Reported { .. }));
        assert_eq!(back.to_string(), dag.to_string());
    }
}
