//! Accuracy of the TSQR, SVD and solve graphs against whole-matrix routines,
//! run serially on every compiled backend, on sizes that are not multiples of
//! the tile.

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2, s};
use wukong_dag::DataId;

use super::*;
use crate::kernels::{Transpose, Triangle};
use crate::{
    BackendKind, BlockMatrix, LinalgError, RandomizedSvd, Tile, TileBackend, V,
    cholesky_solve_plan, full_svd_plan, lstsq_plan, randomized_svd_plan, tall_svd_plan,
    triangular_solve_plan, tsqr_plan,
};

fn backends() -> Vec<&'static dyn TileBackend> {
    let mut all = vec![BackendKind::Faer.kernels().unwrap()];
    if let Ok(openblas) = BackendKind::OpenBlas.kernels() {
        all.push(openblas);
    }
    all
}

fn inputs(map: &TileMap, matrix: &Array2<f64>) -> Vec<(DataId, Arc<Tile>)> {
    let l = map.layout;
    let (rows, cols) = l.grid();
    let mut out = Vec::new();
    for i in 0..rows {
        for j in 0..cols {
            if let Some(item) = map.get(i, j) {
                let (r0, c0) = (l.row_offset(i), l.col_offset(j));
                let (r, c) = l.tile_shape(i, j);
                let tile = crate::tile::to_column_major(matrix.slice(s![r0..r0 + r, c0..c0 + c]));
                out.push((item, Arc::new(tile)));
            }
        }
    }
    out
}

fn gather(map: &TileMap, values: &HashMap<DataId, Arc<Tile>>) -> Array2<f64> {
    let l = map.layout;
    let mut whole = Array2::zeros((l.rows(), l.cols()));
    let (rows, cols) = l.grid();
    for i in 0..rows {
        for j in 0..cols {
            if let Some(item) = map.get(i, j) {
                let (r0, c0) = (l.row_offset(i), l.col_offset(j));
                let (r, c) = l.tile_shape(i, j);
                whole
                    .slice_mut(s![r0..r0 + r, c0..c0 + c])
                    .assign(&*values[&item]);
            }
        }
    }
    whole
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    BlockMatrix::random(rows, cols, rows, cols, seed)
        .unwrap()
        .to_array()
}

fn norm(a: ArrayView2<'_, f64>) -> f64 {
    crate::tile::frobenius_norm(a)
}

fn orthogonality(q: &Array2<f64>) -> f64 {
    norm((q.t().dot(q) - Array2::<f64>::eye(q.ncols())).view())
}

#[test]
fn tsqr_factors_tall_matrices_with_any_tree() {
    // (rows, cols, tile rows, arity): ragged last tiles, tiles shorter than
    // the matrix is wide, odd arities and a single tile.
    let cases = [
        (1000, 37, 128, 2),
        (1000, 37, 128, 3),
        (300, 20, 64, 5),
        (100, 30, 16, 2),
        (90, 12, 200, 2),
    ];
    for backend in backends() {
        for &(m, n, tile, arity) in &cases {
            let a = random(m, n, 11);
            let plan = tsqr_plan(TileLayout::new(m, n, tile, n).unwrap(), arity, true).unwrap();
            let values = execute_serial(&plan.dag, inputs(&plan.a, &a), backend).unwrap();
            let r = values[&plan.r].as_ref().clone();
            let q = gather(plan.q.as_ref().unwrap(), &values);
            let what = format!("{:?} {m}×{n} tile {tile} arity {arity}", backend.kind());
            assert_eq!(r.dim(), (n, n), "{what}");
            assert!(orthogonality(&q) < 1e-13 * n as f64, "{what}");
            let residual = norm((&a - &q.dot(&r)).view()) / norm(a.view());
            assert!(residual < 1e-14 * m as f64, "{what}: {residual:e}");
            for j in 0..n {
                for i in j + 1..n {
                    assert_eq!(r[[i, j]], 0.0, "{what}: R is not upper triangular");
                }
            }
            // R is unique up to the signs of its rows.
            let (reference, _) = backend.qr_whole(a.clone(), 2, false).unwrap();
            for i in 0..n {
                let sign = (r[[i, i]] * reference[[i, i]]).signum();
                let row = &r.row(i) * sign - reference.row(i);
                assert!(
                    norm(row.insert_axis(ndarray::Axis(0)).view()) < 1e-11 * m as f64,
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn cholesky_qr2_leaves_match_householder_and_fall_back_when_ill_conditioned() {
    let tree = crate::Tree {
        arity: 2,
        leaf: crate::QrMethod::CholeskyQr2,
    };
    let well = random(900, 24, 31);
    // U·Σ·Vᵀ with σ from 1 to 1e-12 and a random V that mixes the columns:
    // κ = 1e12, where CholeskyQR2 cannot factor; Householder must.
    let faer = BackendKind::Faer.kernels().unwrap();
    let orthonormal = |rows, seed| {
        faer.qr_whole(random(rows, 24, seed), 1, true)
            .unwrap()
            .1
            .unwrap()
    };
    let (u, v) = (orthonormal(900, 32), orthonormal(24, 33));
    let graded = |decades: f64| {
        let mut us = u.clone();
        for j in 0..24 {
            let sigma = 10f64.powf(-decades * j as f64 / 23.0);
            us.column_mut(j).mapv_inplace(|x| x * sigma);
        }
        us.dot(&v.t())
    };
    // κ = 1e6: CholeskyQR2 factors it (through L⁻ᵀ products) to full accuracy.
    let (ill, mid) = (graded(12.0), graded(6.0));
    for backend in backends() {
        let whole = crate::tile::to_column_major(mid.view());
        assert!(
            crate::cholesky_qr2(backend, &whole, false)
                .unwrap()
                .is_some()
        );
        for a in [&well, &mid, &ill] {
            let plan = tsqr_plan(TileLayout::new(900, 24, 128, 24).unwrap(), tree, true).unwrap();
            let values = execute_serial(&plan.dag, inputs(&plan.a, a), backend).unwrap();
            let q = gather(plan.q.as_ref().unwrap(), &values);
            let r = values[&plan.r].as_ref().clone();
            assert!(orthogonality(&q) < 1e-13, "{:?}", backend.kind());
            assert!(norm((a - &q.dot(&r)).view()) / norm(a.view()) < 1e-14 * 900.0);
        }
        // The kernel itself declines the ill-conditioned matrix.
        let whole = crate::tile::to_column_major(ill.view());
        assert!(
            crate::cholesky_qr2(backend, &whole, false)
                .unwrap()
                .is_none()
        );
        let tile = crate::tile::to_column_major(well.slice(s![..128, ..]));
        assert!(
            crate::cholesky_qr2(backend, &tile, false)
                .unwrap()
                .is_some()
        );
    }
}

#[test]
fn tsqr_without_q_gives_the_same_r() {
    let a = random(777, 16, 3);
    let layout = TileLayout::new(777, 16, 100, 16).unwrap();
    let backend = BackendKind::Faer.kernels().unwrap();
    let with = tsqr_plan(layout, 4, true).unwrap();
    let without = tsqr_plan(layout, 4, false).unwrap();
    let r1 = execute_serial(&with.dag, inputs(&with.a, &a), backend).unwrap()[&with.r].clone();
    let r2 =
        execute_serial(&without.dag, inputs(&without.a, &a), backend).unwrap()[&without.r].clone();
    assert!(norm((&*r1 - &*r2).view()) < 1e-12);
}

#[test]
fn tsqr_stays_accurate_on_ill_conditioned_and_rank_deficient_inputs() {
    let mut a = random(500, 10, 5);
    // Column scales from 1 to 1e-12: condition number about 1e12.
    for j in 0..10 {
        let scale = 10f64.powi(-(j as i32) * 4 / 3);
        a.column_mut(j).mapv_inplace(|x| x * scale);
    }
    // And an exact copy of a column: rank deficient.
    let copy = a.column(0).to_owned();
    a.column_mut(9).assign(&copy);
    let plan = tsqr_plan(TileLayout::new(500, 10, 64, 10).unwrap(), 2, true).unwrap();
    for backend in backends() {
        let values = execute_serial(&plan.dag, inputs(&plan.a, &a), backend).unwrap();
        let q = gather(plan.q.as_ref().unwrap(), &values);
        let r = values[&plan.r].as_ref().clone();
        assert!(orthogonality(&q) < 1e-13);
        assert!(norm((&a - &q.dot(&r)).view()) / norm(a.view()) < 1e-14 * 500.0);
    }
}

fn check_svd(a: &Array2<f64>, s: &[f64], u: &Array2<f64>, v: &Array2<f64>, what: &str) {
    let mut us = u.clone();
    for (mut column, &sigma) in us.columns_mut().into_iter().zip(s) {
        column.mapv_inplace(|x| x * sigma);
    }
    let residual = norm((a - &us.dot(&v.t())).view()) / norm(a.view());
    assert!(
        residual < 1e-13 * a.nrows() as f64,
        "{what}: ‖A − UΣVᵀ‖/‖A‖ = {residual:e}"
    );
    assert!(orthogonality(u) < 1e-12, "{what}: U");
    assert!(orthogonality(v) < 1e-12, "{what}: V");
}

fn assert_values_match(s: &[f64], reference: &[f64], what: &str) {
    for (i, (x, y)) in s.iter().zip(reference).enumerate() {
        assert!(
            (x - y).abs() <= 1e-10 * reference[0],
            "{what}: σ{i} = {x} vs {y}"
        );
    }
}

#[test]
fn tall_svd_matches_the_whole_matrix_svd() {
    for backend in backends() {
        for &(m, n, tile, arity) in &[(700, 25, 96, 2), (200, 40, 30, 4)] {
            let a = random(m, n, 21);
            let what = format!("{:?} {m}×{n}", backend.kind());
            let reference = backend.svd_whole(a.clone(), 2, false).unwrap().s;
            let layout = TileLayout::new(m, n, tile, n).unwrap();
            let plan = tall_svd_plan(layout, arity, true).unwrap();
            let values = execute_serial(&plan.dag, inputs(&plan.a, &a), backend).unwrap();
            let s: Vec<f64> = values[&plan.s].iter().copied().collect();
            assert_values_match(&s, &reference, &what);
            let u = gather(plan.u.as_ref().unwrap(), &values);
            let Some(V::Transposed(vt)) = plan.v else {
                panic!("tall SVD gives Vᵀ in one tile")
            };
            check_svd(&a, &s, &u, &values[&vt].t().to_owned(), &what);
            let values_only = tall_svd_plan(layout, arity, false).unwrap();
            let out =
                execute_serial(&values_only.dag, inputs(&values_only.a, &a), backend).unwrap();
            let s2: Vec<f64> = out[&values_only.s].iter().copied().collect();
            assert_values_match(&s2, &reference, &what);
        }
    }
}

#[test]
fn full_svd_through_band_form_matches_the_whole_matrix_svd() {
    // Square, tall, ragged last tiles, one tile, tiles of one column; both
    // panel trees.
    use crate::Panel::{Binary, Flat};
    let cases = [
        (90, 90, 16, Flat),
        (75, 61, 16, Binary),
        (130, 97, 32, Flat),
        (130, 97, 32, Binary),
        (40, 40, 64, Binary),
        (23, 17, 1, Binary),
    ];
    for backend in backends() {
        for &(m, n, tile, panel) in &cases {
            let a = random(m, n, 31);
            let what = format!("{:?} {m}×{n} tile {tile} {panel:?}", backend.kind());
            let reference = backend.svd_whole(a.clone(), 2, false).unwrap().s;
            let layout = TileLayout::square_tiles(m, n, tile).unwrap();
            let plan = crate::full_svd_plan_with(layout, panel, false).unwrap();
            let values = execute_serial(&plan.dag, inputs(&plan.a, &a), backend).unwrap();
            let s: Vec<f64> = values[&plan.s].iter().copied().collect();
            assert_eq!(s.len(), n, "{what}");
            assert_values_match(&s, &reference, &what);
            let plan = crate::full_svd_plan_with(layout, panel, true).unwrap();
            let values = execute_serial(&plan.dag, inputs(&plan.a, &a), backend).unwrap();
            let s: Vec<f64> = values[&plan.s].iter().copied().collect();
            assert_values_match(&s, &reference, &what);
            let u = gather(plan.u.as_ref().unwrap(), &values);
            let Some(V::Tiles(v)) = &plan.v else {
                panic!("full SVD gives V in tiles")
            };
            check_svd(&a, &s, &u, &gather(v, &values), &what);
        }
    }
}

#[test]
fn full_svd_of_graded_and_rank_deficient_matrices() {
    // Singular values 2^-i (graded over 60 binades) and an exactly rank-5
    // matrix: values below roundoff of σ₁ come out as roundoff.
    let n = 60;
    let (_, q1) = crate::kernels::FaerBackend
        .qr_whole(random(n, n, 41), 1, true)
        .unwrap();
    let (_, q2) = crate::kernels::FaerBackend
        .qr_whole(random(n, n, 42), 1, true)
        .unwrap();
    let (q1, q2) = (q1.unwrap(), q2.unwrap());
    let sigma: Vec<f64> = (0..n).map(|i| 0.5f64.powi(i as i32)).collect();
    let mut us = q1.clone();
    for (mut column, &x) in us.columns_mut().into_iter().zip(&sigma) {
        column.mapv_inplace(|v| v * x);
    }
    let graded = us.dot(&q2.t());
    let low_rank = random(70, 5, 43).dot(&random(5, n, 44));
    for backend in backends() {
        let layout = TileLayout::square_tiles(n, n, 16).unwrap();
        let plan = full_svd_plan(layout, false).unwrap();
        let values = execute_serial(&plan.dag, inputs(&plan.a, &graded), backend).unwrap();
        let s: Vec<f64> = values[&plan.s].iter().copied().collect();
        assert_values_match(&s, &sigma, "graded");
        let layout = TileLayout::square_tiles(70, n, 16).unwrap();
        let plan = full_svd_plan(layout, true).unwrap();
        let values = execute_serial(&plan.dag, inputs(&plan.a, &low_rank), backend).unwrap();
        let s: Vec<f64> = values[&plan.s].iter().copied().collect();
        let reference = backend.svd_whole(low_rank.clone(), 1, false).unwrap().s;
        assert_values_match(&s, &reference, "rank 5");
        assert!(s[5] <= 1e-13 * s[0], "rank 5: σ5 = {}", s[5]);
        let u = gather(plan.u.as_ref().unwrap(), &values);
        let Some(V::Tiles(v)) = &plan.v else {
            panic!("full SVD gives V in tiles")
        };
        check_svd(&low_rank, &s, &u, &gather(v, &values), "rank 5");
    }
}

#[test]
fn full_svd_rejects_wide_matrices_and_rectangular_tiles() {
    let err = full_svd_plan(TileLayout::square_tiles(30, 40, 8).unwrap(), false).unwrap_err();
    assert!(err.to_string().contains("svd"), "{err}");
    assert!(err.to_string().contains("at least as many rows"), "{err}");
    let err = full_svd_plan(TileLayout::new(40, 40, 8, 10).unwrap(), false).unwrap_err();
    assert!(err.to_string().contains("tiles must be square"), "{err}");
}

#[test]
fn randomized_svd_recovers_a_low_rank_matrix() {
    // Exactly rank 8 plus nothing: the sketch spans the range, so the leading
    // singular values are exact to rounding.
    let (m, n, rank) = (230, 170, 8);
    let a = random(m, rank, 1).dot(&random(rank, n, 2));
    let settings = RandomizedSvd {
        rank,
        oversampling: 5,
        power_iterations: 1,
        tree: 2.into(),
    };
    for backend in backends() {
        let layout = TileLayout::new(m, n, 64, 48).unwrap();
        let plan = randomized_svd_plan(layout, settings, true).unwrap();
        let l = settings.sketch_width(layout);
        let omega = random(n, l, 99);
        let mut given = inputs(&plan.a, &a);
        given.extend(inputs(plan.omega.as_ref().unwrap(), &omega));
        let values = execute_serial(&plan.dag, given, backend).unwrap();
        let s: Vec<f64> = values[&plan.s].iter().copied().collect();
        let reference = backend.svd_whole(a.clone(), 2, false).unwrap().s;
        let what = format!("{:?}", backend.kind());
        assert_values_match(&s[..rank], &reference[..rank], &what);
        let u = gather(plan.u.as_ref().unwrap(), &values);
        let Some(V::Tiles(v)) = &plan.v else {
            panic!("randomized SVD gives V in tiles")
        };
        let v = gather(v, &values);
        let (u, v) = (
            u.slice(s![.., ..rank]).to_owned(),
            v.slice(s![.., ..rank]).to_owned(),
        );
        check_svd(&a, &s[..rank], &u, &v, &what);
    }
}

#[test]
fn randomized_svd_rejects_bad_ranks() {
    let layout = TileLayout::new(50, 40, 16, 16).unwrap();
    let err = randomized_svd_plan(layout, RandomizedSvd::new(41), false).unwrap_err();
    assert!(err.to_string().contains("rank 41 exceeds"), "{err}");
    assert!(matches!(
        randomized_svd_plan(layout, RandomizedSvd::new(0), false),
        Err(LinalgError::ZeroSize { what: "rank" })
    ));
}

fn triangular(n: usize, triangle: Triangle, seed: u64) -> Array2<f64> {
    let mut t = random(n, n, seed);
    for i in 0..n {
        for j in 0..n {
            let keep = match triangle {
                Triangle::Lower => j <= i,
                Triangle::Upper => j >= i,
            };
            if !keep {
                t[[i, j]] = 0.0;
            }
        }
        t[[i, i]] += n as f64;
    }
    t
}

#[test]
fn triangular_solves_in_all_four_forms() {
    let (n, r, tile) = (150, 37, 32);
    let b = random(n, r, 8);
    for backend in backends() {
        for triangle in [Triangle::Lower, Triangle::Upper] {
            for trans in [Transpose::No, Transpose::Yes] {
                let t = triangular(n, triangle, 4);
                let plan = triangular_solve_plan(
                    TileLayout::square_tiles(n, n, tile).unwrap(),
                    triangle,
                    trans,
                    TileLayout::new(n, r, tile, 16).unwrap(),
                )
                .unwrap();
                let mut given = inputs(&plan.a, &t);
                given.extend(inputs(plan.b.as_ref().unwrap(), &b));
                let x = gather(&plan.x, &execute_serial(&plan.dag, given, backend).unwrap());
                let op = if trans == Transpose::No {
                    t.clone()
                } else {
                    t.t().to_owned()
                };
                let residual = norm((&op.dot(&x) - &b).view()) / norm(b.view());
                assert!(residual < 1e-14, "{triangle:?} {trans:?}: {residual:e}");
            }
        }
    }
}

#[test]
fn cholesky_solve_and_least_squares_match_whole_matrix_answers() {
    for backend in backends() {
        let n = 130;
        let spd = BlockMatrix::random_spd(n, n, 3).unwrap().to_array();
        let b = random(n, 5, 6);
        let plan = cholesky_solve_plan(
            TileLayout::square_tiles(n, n, 48).unwrap(),
            TileLayout::new(n, 5, 48, 5).unwrap(),
        )
        .unwrap();
        let mut given = inputs(&plan.a, &spd);
        given.extend(inputs(plan.b.as_ref().unwrap(), &b));
        let x = gather(&plan.x, &execute_serial(&plan.dag, given, backend).unwrap());
        assert!(norm((&spd.dot(&x) - &b).view()) / norm(b.view()) < 1e-14);

        // Least squares against x = R⁻¹·Qᵀ·b from the whole-matrix QR.
        let (m, n, r) = (600, 24, 3);
        let a = random(m, n, 12);
        let b = random(m, r, 13);
        let mut ab = Array2::zeros((m, n + r));
        ab.slice_mut(s![.., ..n]).assign(&a);
        ab.slice_mut(s![.., n..]).assign(&b);
        let plan = lstsq_plan(TileLayout::new(m, n + r, 100, n + r).unwrap(), n, 3).unwrap();
        let x = gather(
            &plan.x,
            &execute_serial(&plan.dag, inputs(&plan.a, &ab), backend).unwrap(),
        );
        let (rr, q) = backend.qr_whole(a.clone(), 2, true).unwrap();
        let mut expected = q.unwrap().t().dot(&b);
        backend
            .trsm(
                crate::Side::Left,
                Triangle::Upper,
                Transpose::No,
                crate::Diagonal::NonUnit,
                1.0,
                rr.view(),
                expected.view_mut(),
            )
            .unwrap();
        assert!(norm((&x - &expected).view()) / norm(expected.view()) < 1e-12);
    }
}

#[test]
fn least_squares_names_a_rank_deficient_column() {
    let (m, n) = (200, 6);
    let mut ab = random(m, n + 1, 4);
    let copy = &ab.column(1) * 2.0;
    ab.column_mut(4).assign(&copy);
    let plan = lstsq_plan(TileLayout::new(m, n + 1, 64, n + 1).unwrap(), n, 2).unwrap();
    let backend = BackendKind::Faer.kernels().unwrap();
    let err = execute_serial(&plan.dag, inputs(&plan.a, &ab), backend).unwrap_err();
    assert!(
        matches!(err, LinalgError::RankDeficient { .. }) && err.to_string().contains("column 4"),
        "{err}"
    );
    let err = lstsq_plan(TileLayout::new(5, 9, 5, 9).unwrap(), 8, 2).unwrap_err();
    assert!(err.to_string().contains("at least as many rows"), "{err}");
}

#[test]
fn tiled_qr_factors_general_matrices_and_applies_q() {
    // (rows, cols, tile): ragged tiles, one tile, square, tall.
    for &(m, n, tile) in &[
        (300, 170, 64),
        (100, 100, 32),
        (50, 20, 64),
        (260, 100, 100),
        (129, 128, 32),
        (300, 64, 16),
    ] {
        let a = random(m, n, 41);
        let b = random(m, 3, 42);
        for (panel, backend) in [crate::Panel::Flat, crate::Panel::Binary]
            .into_iter()
            .flat_map(|panel| backends().into_iter().map(move |b| (panel, b)))
        {
            let plan = crate::qr_plan_with(
                TileLayout::square_tiles(m, n, tile).unwrap(),
                panel,
                true,
                Some(TileLayout::new(m, 3, tile, tile).unwrap()),
            )
            .unwrap();
            let mut given = inputs(&plan.a, &a);
            given.extend(inputs(plan.b.as_ref().unwrap(), &b));
            let values = execute_serial(&plan.dag, given, backend).unwrap();
            let (q, r) = (
                gather(plan.q.as_ref().unwrap(), &values),
                gather(&plan.r, &values),
            );
            let what = format!("{m}×{n} tile {tile} {panel:?}");
            assert!(orthogonality(&q) < 1e-13, "{what}: {}", orthogonality(&q));
            assert!(
                norm((&a - &q.dot(&r)).view()) / norm(a.view()) < 1e-14 * m as f64,
                "{what}"
            );
            for j in 0..n {
                for i in j + 1..n {
                    assert_eq!(r[[i, j]], 0.0, "{what}: R not upper triangular");
                }
            }
            // The first n rows of Qᵀ·B equal (thin Q)ᵀ·B.
            let qtb = gather(plan.qtb.as_ref().unwrap(), &values);
            let expected = q.t().dot(&b);
            let top = qtb.slice(s![..n, ..]).to_owned();
            assert!(
                norm((&top - &expected).view()) < 1e-12 * norm(b.view()),
                "{what}"
            );
            // And Q is orthogonal on all of B: ‖QᵀB‖ = ‖B‖.
            assert!((norm(qtb.view()) - norm(b.view())).abs() < 1e-12 * norm(b.view()));
        }
    }
    let err =
        crate::qr_plan(TileLayout::square_tiles(10, 20, 4).unwrap(), false, None).unwrap_err();
    assert!(err.to_string().contains("at least as many rows"), "{err}");
}
