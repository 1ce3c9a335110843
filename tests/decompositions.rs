//! TSQR, SVDs and solves through the embedded runtime with every scheduler
//! and store, against faer's whole-matrix routines, on sizes that are not
//! multiples of the tile; and their bad inputs.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use ndarray::{Array2, s};
use wukong::linalg::tile::frobenius_norm;
use wukong::{BackendKind, BlockMatrix, Error, LinalgError, RandomizedSvd, Runtime};
use wukong::{Transpose, Triangle};

mod common;
use common::{relative_difference, runtimes};

fn faer() -> &'static dyn wukong::linalg::TileBackend {
    BackendKind::Faer.kernels().unwrap()
}

fn orthogonality(q: &Array2<f64>) -> f64 {
    frobenius_norm((q.t().dot(q) - Array2::<f64>::eye(q.ncols())).view())
}

fn value_error(s: &[f64], reference: &[f64]) -> f64 {
    s.iter()
        .zip(reference)
        .map(|(x, y)| (x - y).abs() / reference[0])
        .fold(0.0, f64::max)
}

#[test]
fn tsqr_gives_orthonormal_q_and_the_whole_matrix_r() {
    for rt in runtimes() {
        for (m, n, tile, arity) in [(1000, 33, 128, 2), (515, 40, 64, 3), (77, 20, 10, 4)] {
            let a = BlockMatrix::random(m, n, tile, n, 3).unwrap();
            let f = rt.tsqr_with(&a, arity, true, &Default::default()).unwrap();
            let q = f.q.unwrap().to_array();
            let what = format!(
                "{} {:?} {m}×{n}/{tile}",
                rt.scheduler().name(),
                rt.backend()
            );
            assert!(orthogonality(&q) < 1e-13, "{what}");
            let a = a.to_array();
            assert!(relative_difference(&q.dot(&f.r), &a) < 1e-14, "{what}");
            let (r_ref, _) = faer().qr_whole(a.clone(), 2, false).unwrap();
            // Equal up to the signs of the rows.
            let mut signed = f.r.clone();
            for i in 0..n {
                let sign = (f.r[[i, i]] * r_ref[[i, i]]).signum();
                signed.row_mut(i).mapv_inplace(|x| x * sign);
            }
            assert!(relative_difference(&signed, &r_ref) < 1e-12, "{what}");
        }
    }
}

#[test]
fn tiled_qr_gives_q_and_r_and_applies_qt() {
    for rt in runtimes() {
        for (m, n, tile) in [(333, 200, 64), (200, 200, 50), (90, 40, 128)] {
            let a = BlockMatrix::random(m, n, tile, tile, 9).unwrap();
            let f = rt.qr_with(&a, true, &Default::default()).unwrap();
            let (q, r) = (f.q.unwrap().to_array(), f.r.to_array());
            let what = format!(
                "{} {:?} {m}×{n}/{tile}",
                rt.scheduler().name(),
                rt.backend()
            );
            assert!(orthogonality(&q) < 1e-13, "{what}");
            assert!(
                relative_difference(&q.dot(&r), &a.to_array()) < 1e-14,
                "{what}"
            );
            let b = BlockMatrix::random(m, 2, tile, tile, 10).unwrap();
            let (factors, qtb) = rt.qr_apply_transpose(&a, &b, &Default::default()).unwrap();
            assert!(
                relative_difference(&factors.r.to_array(), &r) < 1e-12,
                "{what}"
            );
            let top = qtb.to_array().slice(s![..n, ..]).to_owned();
            assert!(
                relative_difference(&top, &q.t().dot(&b.to_array())) < 1e-12,
                "{what}"
            );
        }
    }
}

#[test]
fn tall_svd_matches_faer() {
    for rt in runtimes() {
        let a = BlockMatrix::random(901, 30, 128, 30, 5).unwrap();
        let reference = faer().svd_whole(a.to_array(), 2, false).unwrap().s;
        let values = rt.svd_tall(&a, 2, false, &Default::default()).unwrap();
        assert!(value_error(&values.s, &reference) < 1e-10);
        let f = rt.svd_tall(&a, 4, true, &Default::default()).unwrap();
        assert!(value_error(&f.s, &reference) < 1e-10);
        let (u, vt) = (f.u.unwrap().to_array(), f.vt.unwrap());
        let mut us = u.clone();
        for (mut column, sigma) in us.columns_mut().into_iter().zip(&f.s) {
            column.mapv_inplace(|x| x * sigma);
        }
        assert!(relative_difference(&us.dot(&vt), &a.to_array()) < 1e-13);
        assert!(orthogonality(&u) < 1e-12 && orthogonality(&vt.t().to_owned()) < 1e-12);
    }
}

fn check_factors(a: &Array2<f64>, f: wukong::SvdFactors, reference: &[f64], what: &str) {
    assert!(value_error(&f.s, reference) < 1e-10, "{what}");
    let (u, vt) = (f.u.unwrap().to_array(), f.vt.unwrap());
    let mut us = u.clone();
    for (mut column, sigma) in us.columns_mut().into_iter().zip(&f.s) {
        column.mapv_inplace(|x| x * sigma);
    }
    assert!(relative_difference(&us.dot(&vt), a) < 1e-13, "{what}");
    assert!(
        orthogonality(&u) < 1e-12 && orthogonality(&vt.t().to_owned()) < 1e-12,
        "{what}"
    );
}

#[test]
fn full_svd_through_band_form_matches_faer() {
    // Square, tall and wide (factored transposed), ragged last tiles.
    for rt in runtimes() {
        for (m, n) in [(150, 150), (170, 111), (90, 140)] {
            let a = BlockMatrix::random(m, n, 32, 32, 6).unwrap();
            let what = format!("{m}×{n}");
            let reference = faer().svd_whole(a.to_array(), 2, false).unwrap().s;
            let values = rt.svd_full(&a, false, &Default::default()).unwrap();
            assert_eq!(values.s.len(), m.min(n), "{what}");
            assert!(value_error(&values.s, &reference) < 1e-10, "{what}");
            assert!(values.u.is_none() && values.vt.is_none());
            let f = rt.svd_full(&a, true, &Default::default()).unwrap();
            assert_eq!(f.u.as_ref().unwrap().shape(), (m, m.min(n)), "{what}");
            check_factors(&a.to_array(), f, &reference, &what);
        }
    }
}

#[test]
fn randomized_svd_finds_the_leading_triplets() {
    // A matrix with a fast-decaying spectrum: U·diag(2^-i)·Vᵀ plus nothing.
    let (m, n, k) = (400, 260, 12);
    let q1 = faer()
        .qr_whole(
            BlockMatrix::random(m, 40, m, 40, 1).unwrap().to_array(),
            1,
            true,
        )
        .unwrap()
        .1
        .unwrap();
    let q2 = faer()
        .qr_whole(
            BlockMatrix::random(n, 40, n, 40, 2).unwrap().to_array(),
            1,
            true,
        )
        .unwrap()
        .1
        .unwrap();
    let sigma: Vec<f64> = (0..40).map(|i| 0.5f64.powi(i)).collect();
    let mut scaled = q1.clone();
    for (mut column, s) in scaled.columns_mut().into_iter().zip(&sigma) {
        column.mapv_inplace(|x| x * s);
    }
    let whole = scaled.dot(&q2.t());
    for rt in runtimes().into_iter().take(3) {
        let a = BlockMatrix::from_array(whole.view(), 96, 96).unwrap();
        let settings = RandomizedSvd {
            rank: k,
            oversampling: 8,
            power_iterations: 2,
            tree: 2.into(),
        };
        let f = rt
            .randomized_svd(&a, settings, true, 3, &Default::default())
            .unwrap();
        assert_eq!(f.s.len(), k);
        assert!(value_error(&f.s, &sigma[..k]) < 1e-10, "{:?}", f.s);
        let (u, vt) = (f.u.unwrap().to_array(), f.vt.unwrap());
        assert_eq!((u.dim(), vt.dim()), ((m, k), (k, n)));
        // Rank-k truncation error is σ_k = 2^-k in the 2-norm.
        let mut us = u.clone();
        for (mut column, s) in us.columns_mut().into_iter().zip(&f.s) {
            column.mapv_inplace(|x| x * s);
        }
        let error = frobenius_norm((&whole - &us.dot(&vt)).view());
        assert!(error < 2.0 * sigma[k], "{error}");
    }
}

#[test]
fn solves_give_small_residuals() {
    for rt in runtimes() {
        let (n, r, tile) = (170, 9, 48);
        let spd = BlockMatrix::random_spd(n, tile, 4).unwrap();
        let b = BlockMatrix::random(n, r, tile, tile, 5).unwrap();
        let x = rt.cholesky_solve(&spd, &b, &Default::default()).unwrap().x;
        let (a, bw) = (spd.to_array(), b.to_array());
        assert!(relative_difference(&a.dot(&x.to_array()), &bw) < 1e-14);

        let mut lower = a.clone();
        for i in 0..n {
            for j in i + 1..n {
                lower[[i, j]] = f64::NAN; // never read
            }
        }
        // NaN above the diagonal is never read.
        let t = BlockMatrix::from_array(lower.view(), tile, tile).unwrap();
        for trans in [Transpose::No, Transpose::Yes] {
            let x = rt
                .solve_triangular(&t, Triangle::Lower, trans, &b, &Default::default())
                .unwrap()
                .x
                .to_array();
            let l = lower.mapv(|x| if x.is_nan() { 0.0 } else { x });
            let op = if trans == Transpose::No {
                l.clone()
            } else {
                l.t().to_owned()
            };
            assert!(relative_difference(&op.dot(&x), &bw) < 1e-14);
        }
        // Inside the triangle it is an error naming its place.
        lower[[100, 7]] = f64::INFINITY;
        let t = BlockMatrix::from_array(lower.view(), tile, tile).unwrap();
        let err = rt
            .solve_triangular(&t, Triangle::Lower, Transpose::No, &b, &Default::default())
            .unwrap_err();
        assert!(err.to_string().contains("row 100, column 7"), "{err}");
    }
}

#[test]
fn least_squares_matches_the_normal_equations_answer() {
    for rt in runtimes() {
        let (m, n) = (800, 25);
        let a = BlockMatrix::random(m, n, 150, 10, 6).unwrap();
        let b = BlockMatrix::random(m, 3, 150, 3, 7).unwrap();
        let x = rt
            .lstsq(&a, &b, 2, &Default::default())
            .unwrap()
            .x
            .to_array();
        // At the minimum, the residual is orthogonal to A's columns.
        let (aw, bw) = (a.to_array(), b.to_array());
        let residual = &aw.dot(&x) - &bw;
        let normal = aw.t().dot(&residual);
        assert!(
            frobenius_norm(normal.view())
                < 1e-11 * frobenius_norm(aw.view()) * frobenius_norm(residual.view()),
        );
    }
}

#[test]
fn lazy_svd_composes_with_products_and_transposes() {
    // σ(AᵀA) = σ(A)² in one graph with the product; and the SVD of a wide
    // W through its transpose, Wᵀ = U·Σ·Vᵀ.
    let a = BlockMatrix::random(160, 90, 32, 32, 31).unwrap();
    let w = BlockMatrix::random(70, 150, 32, 32, 32).unwrap();
    let sigma = faer().svd_whole(a.to_array(), 2, false).unwrap().s;
    let sigma_w = faer().svd_whole(w.to_array(), 2, false).unwrap().s;
    for rt in runtimes() {
        let graph = wukong::Graph::new();
        let (la, lw) = (graph.input(&a).unwrap(), graph.input(&w).unwrap());
        let (s, none) = la.t().matmul(&la).unwrap().svd(false).unwrap();
        assert!(none.is_none());
        let (sw, vectors) = lw.t().svd(true).unwrap();
        let (u, v) = vectors.unwrap();
        let err = lw.svd(false).unwrap_err();
        assert!(err.to_string().contains("at least as many rows"), "{err}");
        let (results, _) = rt
            .compute(&graph, &[&s, &sw, &u, &v], &Default::default())
            .unwrap();
        let squares: Vec<f64> = sigma.iter().map(|x| x * x).collect();
        let got: Vec<f64> = results[0].to_array().iter().copied().collect();
        assert!(value_error(&got, &squares) < 1e-10, "{got:?}");
        let values: Vec<f64> = results[1].to_array().iter().copied().collect();
        assert!(value_error(&values, &sigma_w) < 1e-10);
        let (uw, vw) = (results[2].to_array(), results[3].to_array());
        assert_eq!((uw.dim(), vw.dim()), ((150, 70), (70, 70)));
        let mut us = uw.clone();
        for (mut column, x) in us.columns_mut().into_iter().zip(&values) {
            column.mapv_inplace(|v| v * x);
        }
        let wt = w.to_array().t().to_owned();
        assert!(relative_difference(&us.dot(&vw.t()), &wt) < 1e-13);
        assert!(orthogonality(&uw) < 1e-12 && orthogonality(&vw) < 1e-12);
    }
}

#[test]
fn lazy_composition_runs_ridge_regression_as_one_graph() {
    let (m, n, tile, lambda) = (300, 70, 32, 0.75);
    let a = BlockMatrix::random(m, n, tile, tile, 21).unwrap();
    let b = BlockMatrix::random(m, 2, tile, tile, 22).unwrap();
    let (aw, bw) = (a.to_array(), b.to_array());
    let mut normal = aw.t().dot(&aw);
    for i in 0..n {
        normal[[i, i]] += lambda;
    }
    let rhs = aw.t().dot(&bw);
    let mut written = Vec::new();
    for rt in runtimes() {
        let graph = wukong::Graph::new();
        let (la, lb) = (graph.input(&a).unwrap(), graph.input(&b).unwrap());
        let gram = la.t().matmul(&la).unwrap().add_identity(lambda).unwrap();
        let x = gram.cholesky_solve(&la.t().matmul(&lb).unwrap()).unwrap();
        let (results, report) = rt.compute(&graph, &[&x], &Default::default()).unwrap();
        let x = results[0].to_array();
        assert_eq!(x.dim(), (n, 2));
        let residual = &normal.dot(&x) - &rhs;
        assert!(frobenius_norm(residual.view()) < 1e-12 * frobenius_norm(rhs.view()));
        written.push((rt.scheduler(), rt.threads(), report.io.store_write_bytes));
    }
    // Intermediates (AᵀA, its factor, Aᵀb) are not results: the Wukong
    // scheduler writes less of them than the numpywren-style one.
    let wukong = written
        .iter()
        .find(|w| w.0 == wukong::Scheduler::Wukong)
        .unwrap();
    let baseline = written
        .iter()
        .find(|w| w.0 == wukong::Scheduler::Numpywren)
        .unwrap();
    assert!(wukong.2 < baseline.2, "{written:?}");

    // Least squares composed from TSQR's Q and R: x = R⁻¹·(Qᵀ·b).
    let tall = BlockMatrix::random(500, 12, 64, 12, 23).unwrap();
    let rhs = BlockMatrix::random(500, 2, 64, 2, 24).unwrap();
    let graph = wukong::Graph::new();
    let (lt, lr) = (graph.input(&tall).unwrap(), graph.input(&rhs).unwrap());
    let (q, r) = lt.tsqr(3, true).unwrap();
    let qtb = q.unwrap().t().matmul(&lr).unwrap();
    let x = r.solve_triangular(Triangle::Upper, &qtb).unwrap();
    let rt = Runtime::new().with_threads(2);
    let (composed, _) = rt.compute(&graph, &[&x], &Default::default()).unwrap();
    let direct = rt.lstsq(&tall, &rhs, 2, &Default::default()).unwrap().x;
    assert!(relative_difference(&composed[0].to_array(), &direct.to_array()) < 1e-12);

    // Tile QR inside a composed graph: Q·R, computed in the same graph, is A.
    let graph = wukong::Graph::new();
    let la = graph.input(&a).unwrap();
    let (q, r) = la.qr(true).unwrap();
    let product = q.unwrap().matmul(&r).unwrap();
    let (results, _) = rt
        .compute(&graph, &[&product], &Default::default())
        .unwrap();
    assert!(relative_difference(&results[0].to_array(), &aw) < 1e-13);

    // Handles of two graphs do not mix, and a finished graph stays finished.
    let (g1, g2) = (wukong::Graph::new(), wukong::Graph::new());
    let (x1, x2) = (g1.input(&a).unwrap(), g2.input(&a).unwrap());
    let err = x1.t().matmul(&x2).unwrap_err();
    assert!(err.to_string().contains("another graph"), "{err}");
    let rt = Runtime::new().with_threads(2);
    rt.compute(&g1, &[&x1], &Default::default()).unwrap();
    let err = rt.compute(&g1, &[&x1], &Default::default()).unwrap_err();
    assert!(err.to_string().contains("already finished"), "{err}");
    let err = x2.matmul(&x2).unwrap_err();
    assert!(err.to_string().contains("shape mismatch"), "{err}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let rt = Runtime::new().with_threads(2);
    let wide_tiles = BlockMatrix::random(100, 20, 32, 8, 1).unwrap();
    let err = rt.tsqr(&wide_tiles).unwrap_err();
    assert!(err.to_string().contains("one column of tiles"), "{err}");
    let err = rt
        .qr_with(&wide_tiles, false, &Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("tiles must be square"), "{err}");
    let wide = BlockMatrix::random(20, 100, 16, 16, 1).unwrap();
    let err = rt.qr_with(&wide, false, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("at least as many rows"), "{err}");

    let mut with_nan = BlockMatrix::random(100, 8, 32, 8, 1).unwrap().to_array();
    with_nan[[70, 3]] = f64::NAN;
    let a = BlockMatrix::from_array(with_nan.view(), 32, 8).unwrap();
    let err = rt.svd_tall(&a, 2, false, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("row 70, column 3"), "{err}");

    // A rank-deficient least-squares problem names the dependent column.
    let mut deficient = BlockMatrix::random(90, 6, 30, 6, 2).unwrap().to_array();
    let copy = deficient.slice(s![.., 1]).to_owned();
    deficient.slice_mut(s![.., 5]).assign(&copy);
    let a = BlockMatrix::from_array(deficient.view(), 30, 6).unwrap();
    let b = BlockMatrix::random(90, 1, 30, 1, 3).unwrap();
    let err = rt.lstsq(&a, &b, 2, &Default::default()).unwrap_err();
    assert!(
        matches!(err, Error::Linalg(LinalgError::RankDeficient { .. }))
            && err.to_string().contains("column 5"),
        "{err}"
    );
    let b_rows = BlockMatrix::random(91, 1, 30, 1, 3).unwrap();
    let err = rt.lstsq(&a, &b_rows, 2, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("same rows"), "{err}");

    let spd = BlockMatrix::random_spd(50, 16, 1).unwrap();
    let b = BlockMatrix::random(50, 2, 20, 20, 1).unwrap();
    let err = rt
        .cholesky_solve(&spd, &b, &Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("row tiles"), "{err}");
    let not_spd = BlockMatrix::from_array((-spd.to_array()).view(), 16, 16).unwrap();
    let b = BlockMatrix::random(50, 2, 16, 16, 1).unwrap();
    let err = rt
        .cholesky_solve(&not_spd, &b, &Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("not positive definite"), "{err}");

    let square = BlockMatrix::random(64, 64, 16, 16, 1).unwrap();
    let err = rt
        .randomized_svd(
            &square,
            RandomizedSvd::new(65),
            false,
            1,
            &Default::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("rank 65 exceeds"), "{err}");

    let err = rt
        .svd_full(&wide_tiles, false, &Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("tiles must be square"), "{err}");
    let mut with_inf = BlockMatrix::random(40, 40, 16, 16, 1).unwrap().to_array();
    with_inf[[33, 2]] = f64::INFINITY;
    let a = BlockMatrix::from_array(with_inf.view(), 16, 16).unwrap();
    let err = rt.svd_full(&a, true, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("row 33, column 2"), "{err}");
}

#[test]
fn tsqr_leaves_name_non_finite_input_and_accept_huge_finite_values() {
    // The leaves check their own tiles (no pass over A before the run): the
    // error names A and the value's position in the whole matrix, in every
    // tile (the last one ragged), for both leaf methods and every scheduler.
    let clean = BlockMatrix::random(150, 9, 40, 9, 4).unwrap().to_array();
    for rt in runtimes() {
        for leaf in [wukong::QrMethod::CholeskyQr2, wukong::QrMethod::Householder] {
            let tree = wukong::Tree { arity: 2, leaf };
            for (row, col, value) in [
                (0, 0, f64::NAN),
                (57, 4, f64::INFINITY),
                (149, 8, f64::NEG_INFINITY),
            ] {
                let mut bad = clean.clone();
                bad[[row, col]] = value;
                let a = BlockMatrix::from_array(bad.view(), 40, 9).unwrap();
                let what = format!("{} {leaf:?} ({row}, {col})", rt.scheduler().name());
                for err in [
                    rt.tsqr_with(&a, tree, true, &Default::default())
                        .unwrap_err(),
                    rt.svd_tall(&a, tree, false, &Default::default())
                        .unwrap_err(),
                ] {
                    match err {
                        Error::Linalg(LinalgError::NonFinite {
                            matrix: "A",
                            row: r,
                            col: c,
                            value: v,
                        }) => assert!(
                            (r, c) == (row, col) && (v == value || v.is_nan() && value.is_nan()),
                            "{what}: reported ({r}, {c}) = {v}"
                        ),
                        other => panic!("{what}: {other:?}"),
                    }
                }
            }
            // Values whose squares overflow make CholeskyQR2's Gram matrix
            // infinite: that is not an error, Householder factors the tile.
            let huge = &clean * 1e300;
            let a = BlockMatrix::from_array(huge.view(), 40, 9).unwrap();
            let f = rt.tsqr_with(&a, tree, true, &Default::default()).unwrap();
            let q = f.q.unwrap().to_array();
            assert!(orthogonality(&q) < 1e-13, "{leaf:?}");
            let product = q.dot(&(&f.r / 1e300));
            assert!(relative_difference(&product, &clean) < 1e-13, "{leaf:?}");
        }
    }
}
