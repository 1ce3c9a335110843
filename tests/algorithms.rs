//! Tiled GEMM and Cholesky through the embedded runtime, against direct
//! whole-matrix computations, on sizes that are not multiples of the tile, and
//! every kind of bad input.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use ndarray::Array2;
use wukong::{BackendKind, BlockMatrix, Error, LinalgError, Runtime};

mod common;
use common::{relative_difference, runtimes};

#[test]
fn gemm_matches_the_whole_matrix_product() {
    for rt in runtimes() {
        for (m, k, n, tile) in [
            (1, 1, 1, 1),
            (7, 31, 2, 3),
            (127, 31, 240, 32),
            (240, 127, 31, 64),
            (31, 240, 127, 500),
        ] {
            let a = BlockMatrix::random(m, k, tile, tile, 11).unwrap();
            let b = BlockMatrix::random(k, n, tile, tile, 12).unwrap();
            let c = rt.gemm(&a, &b).unwrap();
            assert_eq!(c.shape(), (m, n));
            let expected = a.to_array().dot(&b.to_array());
            let error = relative_difference(&c.to_array(), &expected);
            assert!(
                error < 1e-13,
                "{:?} {m}x{k}x{n} tile {tile}: {error}",
                rt.backend()
            );
        }
    }
}

#[test]
fn gemm_update_adds_beta_c() {
    for rt in runtimes() {
        let a = BlockMatrix::random(50, 40, 16, 16, 1).unwrap();
        let b = BlockMatrix::random(40, 30, 16, 16, 2).unwrap();
        let c = BlockMatrix::random(50, 30, 16, 16, 3).unwrap();
        let result = rt.gemm_update(-2.0, &a, &b, 0.5, &c).unwrap();
        let expected = a.to_array().dot(&b.to_array()) * -2.0 + c.to_array() * 0.5;
        assert!(relative_difference(&result.to_array(), &expected) < 1e-13);
        // The input C is untouched.
        assert_eq!(
            c.to_array(),
            BlockMatrix::random(50, 30, 16, 16, 3).unwrap().to_array()
        );
    }
}

#[test]
fn cholesky_reconstructs_the_matrix() {
    for rt in runtimes() {
        for (n, tile) in [(1, 1), (2, 1), (31, 7), (127, 32), (240, 64), (240, 1000)] {
            let a = BlockMatrix::random_spd(n, tile, 5).unwrap();
            let l = rt.cholesky(&a).unwrap().to_array();
            for i in 0..n {
                for j in i + 1..n {
                    assert_eq!(l[[i, j]], 0.0, "L must be lower triangular");
                }
            }
            let a = a.to_array();
            let error = relative_difference(&l.dot(&l.t()), &a);
            assert!(error < 1e-14, "{rt:?} n={n} tile={tile}: {error}");
            // Same factor as the whole-matrix call.
            let mut whole = a.clone();
            rt.kernels().cholesky_whole(whole.view_mut(), 1).unwrap();
            assert!(relative_difference(&l, &whole) < 1e-12);
        }
    }
}

#[test]
fn the_input_survives_a_cholesky() {
    let rt = Runtime::new();
    let a = BlockMatrix::random_spd(100, 30, 9).unwrap();
    let before = a.to_array();
    rt.cholesky(&a).unwrap();
    assert_eq!(a.to_array(), before);
}

#[test]
fn a_matrix_that_is_not_positive_definite_names_the_tile_and_pivot() {
    for rt in runtimes() {
        // Identity with one negative entry at row 45: tile 45 / 16 = 2, pivot 13.
        let mut a = Array2::<f64>::eye(70);
        a[[45, 45]] = -3.0;
        let a = BlockMatrix::from_array(a.view(), 16, 16).unwrap();
        match rt.cholesky(&a) {
            Err(Error::Linalg(LinalgError::NotPositiveDefinite { tile, pivot, row })) => {
                assert_eq!((tile, pivot, row), (2, 13, 45));
            }
            other => panic!("expected a pivot error, got {other:?}"),
        }
        // A symmetric indefinite matrix whose failure appears only after updates.
        let b = ndarray::arr2(&[[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        let b = BlockMatrix::from_array(b.view(), 1, 1).unwrap();
        let err = rt.cholesky(&b).unwrap_err();
        assert!(
            err.to_string()
                .contains("not positive definite: the pivot at row 1"),
            "{err}"
        );
    }
}

#[test]
fn non_finite_input_is_rejected_with_its_position() {
    let rt = Runtime::new();
    let mut a = Array2::<f64>::eye(20);
    a[[17, 3]] = f64::NAN;
    let a = BlockMatrix::from_array(a.view(), 8, 8).unwrap();
    let err = rt.cholesky(&a).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Linalg(LinalgError::NonFinite {
                matrix: "A",
                row: 17,
                col: 3,
                ..
            })
        ),
        "{err}"
    );
    let mut c = Array2::<f64>::zeros((20, 5));
    c[[19, 4]] = f64::INFINITY;
    let c = BlockMatrix::from_array(c.view(), 8, 8).unwrap();
    let err = rt
        .gemm(&c.clone(), &BlockMatrix::random(5, 3, 8, 8, 2).unwrap())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("A holds a non-finite value inf at row 19, column 4"),
        "{err}"
    );
    let err = rt.gemm(&a, &c).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Linalg(LinalgError::NonFinite { matrix: "A", .. })
        ),
        "{err}"
    );
}

#[test]
fn shape_mismatches_are_errors_before_anything_runs() {
    let rt = Runtime::new();
    let a = BlockMatrix::random(10, 7, 4, 4, 1).unwrap();
    let b = BlockMatrix::random(8, 5, 4, 4, 2).unwrap();
    let err = rt.gemm(&a, &b).unwrap_err();
    assert!(err.to_string().contains("A is 10×7 and B is 8×5"), "{err}");

    let b = BlockMatrix::random(7, 5, 3, 3, 2).unwrap();
    let err = rt.gemm(&a, &b).unwrap_err();
    assert!(
        err.to_string()
            .contains("A's tiles have 4 columns but B's tiles have 3 rows"),
        "{err}"
    );

    let b = BlockMatrix::random(7, 5, 4, 4, 2).unwrap();
    let c = BlockMatrix::random(10, 6, 4, 4, 3).unwrap();
    let err = rt.gemm_update(1.0, &a, &b, 1.0, &c).unwrap_err();
    assert!(err.to_string().contains("C is 10×6"), "{err}");

    let err = rt.cholesky(&a).unwrap_err();
    assert!(
        err.to_string().contains("must be square, it is 10×7"),
        "{err}"
    );
}

#[test]
fn zero_sizes_are_errors() {
    assert!(matches!(
        BlockMatrix::random(0, 5, 2, 2, 1),
        Err(LinalgError::ZeroSize { what: "rows" })
    ));
    assert!(matches!(
        BlockMatrix::random(5, 5, 0, 2, 1),
        Err(LinalgError::ZeroSize { what: "tile rows" })
    ));
    assert!(matches!(
        BlockMatrix::random_spd(0, 2, 1),
        Err(LinalgError::ZeroSize { .. })
    ));
    let empty = Array2::<f64>::zeros((0, 3));
    assert!(BlockMatrix::from_array(empty.view(), 2, 2).is_err());
}

#[test]
fn cholesky_reads_only_the_lower_triangle() {
    let a = BlockMatrix::random_spd(45, 8, 3).unwrap();
    let expected = Runtime::new().cholesky(&a).unwrap().to_array();
    // Garbage, even NaN, above the diagonal changes nothing, as with LAPACK.
    let mut scribbled = a.to_array();
    for i in 0..45 {
        for j in i + 1..45 {
            scribbled[[i, j]] = if (i + j) % 2 == 0 { f64::NAN } else { 1e300 };
        }
    }
    let scribbled = BlockMatrix::from_array(scribbled.view(), 8, 8).unwrap();
    assert_eq!(
        Runtime::new().cholesky(&scribbled).unwrap().to_array(),
        expected
    );
    // NaN on or below the diagonal is an error naming its position.
    let mut bad = a.to_array();
    bad[[20, 20]] = f64::NAN;
    let bad = BlockMatrix::from_array(bad.view(), 8, 8).unwrap();
    let err = Runtime::new().cholesky(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Linalg(LinalgError::NonFinite {
                row: 20,
                col: 20,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn an_unavailable_backend_is_a_clear_error() {
    if cfg!(feature = "openblas") {
        return;
    }
    let err = Runtime::new()
        .with_backend(BackendKind::OpenBlas)
        .unwrap_err();
    assert!(err.to_string().contains("--features openblas"), "{err}");
}
