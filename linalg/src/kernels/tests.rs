//! Every kernel on every backend against a direct computation, on sizes that
//! are not multiples of anything.

use ndarray::{Array2, ShapeBuilder};

use super::*;
use crate::rng::TileRng;

const SIZES: [usize; 5] = [1, 7, 31, 127, 240];

fn backends() -> Vec<&'static dyn TileBackend> {
    let mut all = vec![BackendKind::Faer.kernels().unwrap()];
    if let Ok(openblas) = BackendKind::OpenBlas.kernels() {
        all.push(openblas);
    }
    all
}

/// Random matrix, column-major or row-major, so both stride patterns are exercised.
fn random(rows: usize, cols: usize, seed: u64, column_major: bool) -> Array2<f64> {
    let mut rng = TileRng::for_tile(seed, rows, cols);
    let mut a = if column_major {
        Array2::zeros((rows, cols).f())
    } else {
        Array2::zeros((rows, cols))
    };
    a.mapv_inplace(|_| rng.symmetric_unit());
    a
}

fn naive_product(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    for i in 0..a.nrows() {
        for j in 0..b.ncols() {
            c[[i, j]] = (0..a.ncols()).map(|p| a[[i, p]] * b[[p, j]]).sum();
        }
    }
    c
}

fn op(a: &Array2<f64>, trans: Transpose) -> Array2<f64> {
    match trans {
        Transpose::No => a.clone(),
        Transpose::Yes => a.t().to_owned(),
    }
}

fn assert_close(actual: &Array2<f64>, expected: &Array2<f64>, what: &str) {
    assert_eq!(actual.dim(), expected.dim(), "{what}");
    let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for ((idx, a), e) in actual.indexed_iter().zip(expected.iter()) {
        assert!(
            (a - e).abs() <= 1e-12 * scale * 256.0,
            "{what}: at {idx:?} {a} vs {e}"
        );
    }
}

const TRANSPOSES: [Transpose; 2] = [Transpose::No, Transpose::Yes];

#[test]
fn gemm_matches_a_direct_product() {
    for backend in backends() {
        for (s, &n) in SIZES.iter().enumerate() {
            let (m, k) = (SIZES[(s + 1) % 5], SIZES[(s + 2) % 5]);
            for ta in TRANSPOSES {
                for tb in TRANSPOSES {
                    for (beta, column_major) in [(0.0, true), (1.0, false), (-0.5, true)] {
                        let a_stored = if ta == Transpose::No { (m, k) } else { (k, m) };
                        let b_stored = if tb == Transpose::No { (k, n) } else { (n, k) };
                        let a = random(a_stored.0, a_stored.1, 1, column_major);
                        let b = random(b_stored.0, b_stored.1, 2, !column_major);
                        let mut c = random(m, n, 3, column_major);
                        let expected = naive_product(&op(&a, ta), &op(&b, tb)) * 1.5
                            + if beta == 0.0 {
                                Array2::zeros((m, n))
                            } else {
                                &c * beta
                            };
                        if beta == 0.0 {
                            c.fill(f64::NAN);
                        }
                        backend
                            .gemm(ta, tb, 1.5, a.view(), b.view(), beta, c.view_mut())
                            .unwrap();
                        let what = format!(
                            "{:?} gemm {m}x{n}x{k} {ta:?} {tb:?} beta={beta}",
                            backend.kind()
                        );
                        assert_close(&c, &expected, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn gemm_with_a_large_transposed_a_and_a_narrow_b() {
    // Sizes where faer computes Cᵀ = op(B)ᵀ·A instead (m ≥ 256 > n).
    for backend in backends() {
        for trans_b in [Transpose::No, Transpose::Yes] {
            for (beta, column_major) in [(0.0, true), (0.5, false)] {
                let a = random(90, 300, 1, column_major);
                let b = op(&random(90, 17, 2, true), trans_b);
                let mut c = random(300, 17, 3, column_major);
                let mut expected = &naive_product(&a.t().to_owned(), &op(&b, trans_b)) * 1.5;
                expected.scaled_add(beta, &c);
                backend
                    .gemm(
                        Transpose::Yes,
                        trans_b,
                        1.5,
                        a.view(),
                        b.view(),
                        beta,
                        c.view_mut(),
                    )
                    .unwrap();
                assert_close(
                    &c,
                    &expected,
                    &format!("{:?} {trans_b:?} β={beta}", backend.kind()),
                );
            }
        }
    }
}

#[test]
fn syrk_updates_one_triangle_only() {
    for backend in backends() {
        for (s, &n) in SIZES.iter().enumerate() {
            let k = SIZES[(s + 3) % 5];
            for trans in TRANSPOSES {
                for triangle in [Triangle::Lower, Triangle::Upper] {
                    let a = random(
                        if trans == Transpose::No { n } else { k },
                        if trans == Transpose::No { k } else { n },
                        4,
                        true,
                    );
                    let c0 = random(n, n, 5, true);
                    let mut c = c0.clone();
                    backend
                        .syrk(triangle, trans, -1.0, a.view(), 0.5, c.view_mut())
                        .unwrap();
                    let full = naive_product(&op(&a, trans), &op(&a, trans).t().to_owned()) * -1.0
                        + &c0 * 0.5;
                    let mut expected = c0.clone();
                    for i in 0..n {
                        for j in 0..n {
                            let inside = match triangle {
                                Triangle::Lower => i >= j,
                                Triangle::Upper => i <= j,
                            };
                            if inside {
                                expected[[i, j]] = full[[i, j]];
                            }
                        }
                    }
                    assert_close(
                        &c,
                        &expected,
                        &format!(
                            "{:?} syrk n={n} k={k} {trans:?} {triangle:?}",
                            backend.kind()
                        ),
                    );
                }
            }
        }
    }
}

/// A well-conditioned triangular matrix: small off-diagonal entries, diagonal ≥ 2.
fn triangular(n: usize, triangle: Triangle, seed: u64) -> Array2<f64> {
    let mut a = random(n, n, seed, true) * (1.0 / n as f64);
    for i in 0..n {
        for j in 0..n {
            let outside = match triangle {
                Triangle::Lower => j > i,
                Triangle::Upper => i > j,
            };
            if outside {
                a[[i, j]] = 0.0;
            }
        }
        a[[i, i]] = 2.0 + a[[i, i]].abs();
    }
    a
}

#[test]
fn trsm_solves_every_variant() {
    for backend in backends() {
        for (s, &n) in SIZES.iter().enumerate() {
            let other = SIZES[(s + 4) % 5];
            for side in [Side::Left, Side::Right] {
                for triangle in [Triangle::Lower, Triangle::Upper] {
                    for trans in TRANSPOSES {
                        for diagonal in [Diagonal::NonUnit, Diagonal::Unit] {
                            for column_major in [true, false] {
                                let stored = triangular(n, triangle, 6);
                                // Garbage in the unused triangle must be ignored.
                                let mut a = stored.clone();
                                for i in 0..n {
                                    for j in 0..n {
                                        if stored[[i, j]] == 0.0 && i != j {
                                            a[[i, j]] = 1e30;
                                        }
                                    }
                                }
                                let a = if column_major {
                                    a
                                } else {
                                    a.as_standard_layout().to_owned()
                                };
                                let mut effective = op(&stored, trans);
                                if diagonal == Diagonal::Unit {
                                    for i in 0..n {
                                        effective[[i, i]] = 1.0;
                                    }
                                }
                                let (rows, cols) = if side == Side::Left {
                                    (n, other)
                                } else {
                                    (other, n)
                                };
                                let b0 = random(rows, cols, 7, column_major);
                                let mut x = b0.clone();
                                backend
                                    .trsm(
                                        side,
                                        triangle,
                                        trans,
                                        diagonal,
                                        2.0,
                                        a.view(),
                                        x.view_mut(),
                                    )
                                    .unwrap();
                                let back = match side {
                                    Side::Left => naive_product(&effective, &x),
                                    Side::Right => naive_product(&x, &effective),
                                };
                                let what = format!(
                                    "{:?} trsm n={n} {side:?} {triangle:?} {trans:?} {diagonal:?} cm={column_major}",
                                    backend.kind()
                                );
                                assert_close(&back, &(&b0 * 2.0), &what);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn spd(n: usize, seed: u64) -> Array2<f64> {
    let r = random(n, n, seed, true);
    let mut a = naive_product(&r, &r.t().to_owned());
    for i in 0..n {
        a[[i, i]] += n as f64;
    }
    a
}

#[test]
fn potrf_reconstructs_the_matrix() {
    for backend in backends() {
        for &n in &SIZES {
            let a = spd(n, 8);
            let mut l = a.clone();
            backend.potrf(l.view_mut()).unwrap();
            for i in 0..n {
                for j in i + 1..n {
                    assert_eq!(l[[i, j]], 0.0);
                }
            }
            assert_close(
                &naive_product(&l, &l.t().to_owned()),
                &a,
                &format!("{:?} potrf n={n}", backend.kind()),
            );
            let mut whole = a.clone();
            backend.cholesky_whole(whole.view_mut(), 2).unwrap();
            assert_close(
                &whole,
                &l,
                &format!("{:?} cholesky_whole n={n}", backend.kind()),
            );
        }
    }
}

#[test]
fn potrf_names_the_failing_pivot() {
    for backend in backends() {
        for (n, bad) in [(1, 0), (7, 3), (31, 30)] {
            let mut a = Array2::<f64>::eye(n);
            a[[bad, bad]] = -1.0;
            match backend.potrf(a.view_mut()) {
                Err(LinalgError::NotPositiveDefinite { pivot, .. }) => assert_eq!(pivot, bad),
                other => panic!(
                    "{:?}: expected a pivot error, got {other:?}",
                    backend.kind()
                ),
            }
        }
    }
}

#[test]
fn whole_matmul_matches_a_direct_product() {
    for backend in backends() {
        let a = random(127, 31, 9, true);
        let b = random(31, 240, 10, false);
        let c = backend.matmul_whole(a.view(), b.view(), 2).unwrap();
        assert_close(
            &c,
            &naive_product(&a, &b),
            &format!("{:?} matmul_whole", backend.kind()),
        );
    }
}

#[test]
fn shape_mismatches_are_errors() {
    for backend in backends() {
        let a = Array2::<f64>::zeros((3, 4));
        let b = Array2::<f64>::zeros((5, 2));
        let mut c = Array2::<f64>::zeros((3, 2));
        let err = backend
            .gemm(
                Transpose::No,
                Transpose::No,
                1.0,
                a.view(),
                b.view(),
                0.0,
                c.view_mut(),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("op(A) is 3×4, op(B) is 5×2"),
            "{err}"
        );
        assert!(
            backend
                .syrk(
                    Triangle::Lower,
                    Transpose::No,
                    1.0,
                    a.view(),
                    0.0,
                    c.view_mut()
                )
                .is_err()
        );
        assert!(
            backend
                .trsm(
                    Side::Left,
                    Triangle::Lower,
                    Transpose::No,
                    Diagonal::NonUnit,
                    1.0,
                    a.view(),
                    c.view_mut()
                )
                .is_err()
        );
        assert!(backend.potrf(c.view_mut()).is_err());
        assert!(backend.matmul_whole(a.view(), b.view(), 1).is_err());
    }
}
