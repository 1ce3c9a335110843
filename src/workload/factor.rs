//! The TSQR, SVD and solve workloads: each times the tiled graph and the
//! same backend's whole-matrix routine on the same input, alternately, and
//! checks the tiled answer.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, s};
use serde::Serialize;
use wukong_executor::{RunOptions, RunReport};
use wukong_linalg::{
    BlockMatrix, Diagonal, LinalgError, Panel, QrMethod, RandomizedSvd, Side, SvdParts,
    TileBackend, TileLayout, Transpose, Tree, Triangle, cholesky_solve_plan, flops,
    full_svd_plan_with, lstsq_plan, qr_plan_with, randomized_svd_plan, tall_svd_plan, tile,
    triangular_solve_plan, tsqr_plan,
};

use super::{Algorithm, Operand, Timings, Workload, WorkloadReport, check};
use crate::{Error, Runtime};
use wukong_linalg::npy::Staged;

/// Which SVD the `svd` workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SvdKind {
    /// Exact, of a tall-skinny matrix: TSQR, then the SVD of `R`.
    Tall,
    /// Randomized truncated, of any matrix.
    Randomized,
    /// Full, of any matrix: tile reduction to band form, then the band's SVD.
    Full,
}

/// Which system the `solve` workload solves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SolveKind {
    /// `L·X = B` with `L` lower triangular.
    Triangular,
    /// `A·X = B` with `A` symmetric positive definite, by Cholesky.
    Cholesky,
    /// `min ‖A·X − B‖` with `A` tall, by TSQR.
    Lstsq,
}

impl std::str::FromStr for SvdKind {
    type Err = wukong_dag::UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        super::parse_name(text, "SVD", "tall, randomized or full")
    }
}

impl std::str::FromStr for SolveKind {
    type Err = wukong_dag::UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        super::parse_name(text, "solve", "triangular, cholesky or lstsq")
    }
}

/// Settings of the TSQR, SVD and solve workloads.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    /// Factors combined per node of a TSQR reduction tree.
    pub arity: usize,
    /// How the tiles (the leaves of TSQR trees) are factored.
    pub leaf: QrMethod,
    /// TSQR: form `Q` explicitly (else `R` only).
    pub explicit_q: bool,
    /// Tile QR and full SVD: how panels are reduced.
    pub panel: Panel,
    /// Which SVD.
    pub svd: SvdKind,
    /// SVD: compute singular vectors too.
    pub vectors: bool,
    /// Randomized SVD: triplets wanted.
    pub rank: usize,
    /// Randomized SVD: extra sketch columns.
    pub oversampling: usize,
    /// Randomized SVD: power iterations.
    pub power_iterations: usize,
    /// Which solve.
    pub solve: SolveKind,
    /// Solve: right-hand sides.
    pub rhs: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            arity: Tree::default().arity,
            leaf: QrMethod::default(),
            explicit_q: false,
            panel: Panel::Flat,
            svd: SvdKind::Tall,
            vectors: false,
            rank: 100,
            oversampling: 10,
            power_iterations: 1,
            solve: SolveKind::Cholesky,
            rhs: 16,
        }
    }
}

fn relative(difference: ArrayView2<'_, f64>, scale: f64) -> f64 {
    tile::frobenius_norm(difference) / scale
}

/// `‖A − Q·R‖/‖A‖`, or without `Q` `‖AᵀA − RᵀR‖/‖A‖²`.
fn qr_residual(
    kernels: &dyn TileBackend,
    a: &Array2<f64>,
    q: Option<&Array2<f64>>,
    r: &Array2<f64>,
    threads: usize,
) -> Result<f64, LinalgError> {
    let norm = tile::frobenius_norm(a.view());
    Ok(match q {
        Some(q) => relative(
            (a - &kernels.matmul_whole(q.view(), r.view(), threads)?).view(),
            norm,
        ),
        None => {
            let at = tile::to_column_major(a.t());
            let rt = tile::to_column_major(r.t());
            let gram = kernels.matmul_whole(at.view(), a.view(), threads)?;
            let rtr = kernels.matmul_whole(rt.view(), r.view(), threads)?;
            relative((&gram - &rtr).view(), norm * norm)
        }
    })
}

/// Largest difference of two lists of singular values, relative to the largest.
fn value_error(s: &[f64], reference: &[f64]) -> f64 {
    let top = reference
        .first()
        .copied()
        .unwrap_or(1.0)
        .max(f64::MIN_POSITIVE);
    s.iter()
        .zip(reference)
        .map(|(x, y)| (x - y).abs() / top)
        .fold(0.0, f64::max)
}

/// `‖A − U·diag(s)·Vᵀ‖/‖A‖`.
fn svd_residual(
    kernels: &dyn TileBackend,
    a: &Array2<f64>,
    u: &Array2<f64>,
    s: &[f64],
    vt: &Array2<f64>,
    threads: usize,
) -> Result<f64, LinalgError> {
    let mut us = u.clone();
    for (mut column, &sigma) in us.columns_mut().into_iter().zip(s) {
        column.mapv_inplace(|x| x * sigma);
    }
    let product = kernels.matmul_whole(us.view(), vt.view(), threads)?;
    Ok(relative(
        (a - &product).view(),
        tile::frobenius_norm(a.view()),
    ))
}

/// `A ≈ U·Σ·Vᵀ` by the randomized algorithm with whole-matrix calls: the
/// reference for the tiled randomized SVD, with the same test matrix.
/// Products with `Aᵀ` are formed as `(Qᵀ·A)ᵀ`, so `A` is never transposed.
fn randomized_whole(
    kernels: &dyn TileBackend,
    a: &Array2<f64>,
    omega: &Array2<f64>,
    power_iterations: usize,
    vectors: bool,
    threads: usize,
) -> Result<SvdParts, LinalgError> {
    let orth = |y: Array2<f64>| -> Result<Array2<f64>, LinalgError> {
        let (_, q) = kernels.qr_whole(y, threads, true)?;
        q.ok_or_else(|| LinalgError::ShapeMismatch {
            operation: "randomized svd reference",
            detail: "QR returned no Q".into(),
        })
    };
    let at_times = |q: &Array2<f64>| -> Result<Array2<f64>, LinalgError> {
        let qt = tile::to_column_major(q.t());
        let product = kernels.matmul_whole(qt.view(), a.view(), threads)?;
        Ok(tile::to_column_major(product.t()))
    };
    let mut y = kernels.matmul_whole(a.view(), omega.view(), threads)?;
    for _ in 0..power_iterations {
        let z = orth(at_times(&orth(y)?)?)?;
        y = kernels.matmul_whole(a.view(), z.view(), threads)?;
    }
    let q = orth(y)?;
    let mut parts = kernels.svd_whole(at_times(&q)?, threads, vectors)?;
    // Bᵀ = U_B·Σ·V_Bᵀ, so A ≈ (Q·V_B)·Σ·U_Bᵀ.
    if let (Some(u_b), Some(vt_b)) = (parts.u.take(), parts.vt.take()) {
        let v_b = tile::to_column_major(vt_b.t());
        parts.u = Some(kernels.matmul_whole(q.view(), v_b.view(), threads)?);
        parts.vt = Some(tile::to_column_major(u_b.t()));
    }
    Ok(parts)
}

/// A lower-triangular `n × n` matrix with a dominant diagonal, tiled.
fn lower_triangular(n: usize, tile_size: usize, seed: u64) -> Result<BlockMatrix, LinalgError> {
    let random = BlockMatrix::random(n, n, tile_size, tile_size, seed)?;
    let layout = random.layout();
    Ok(BlockMatrix::from_fn(layout, |i, j, (rows, cols)| {
        let mut t = random.tile(i, j).as_ref().clone();
        let (r0, c0) = (layout.row_offset(i), layout.col_offset(j));
        for c in 0..cols {
            for r in 0..rows {
                let (gr, gc) = (r0 + r, c0 + c);
                if gc > gr {
                    t[[r, c]] = 0.0;
                } else if gc == gr {
                    t[[r, c]] += n as f64;
                }
            }
        }
        t
    }))
}

impl Workload {
    fn rows(&self) -> usize {
        self.m.unwrap_or(self.n)
    }

    /// The graph of a TSQR, SVD or solve workload.
    pub(super) fn factor_graph(&self) -> Result<wukong_dag::Dag<wukong_linalg::TileOp>, Error> {
        let p = &self.params;
        let (m, n) = (self.rows(), self.n);
        let tall = |cols| TileLayout::new(m, cols, self.tile, cols);
        let square = |rows, cols| TileLayout::square_tiles(rows, cols, self.tile);
        Ok(match (self.algorithm, p.svd, p.solve) {
            (Algorithm::Tsqr, ..) => tsqr_plan(tall(n)?, self.tree(), p.explicit_q)?.dag,
            (Algorithm::Qr, ..) => qr_plan_with(square(m, n)?, p.panel, p.explicit_q, None)?.dag,
            (Algorithm::Svd, SvdKind::Tall, _) => {
                tall_svd_plan(tall(n)?, self.tree(), p.vectors)?.dag
            }
            (Algorithm::Svd, SvdKind::Randomized, _) => {
                randomized_svd_plan(square(m, n)?, self.randomized(), p.vectors)?.dag
            }
            // A wide matrix is factored transposed.
            (Algorithm::Svd, SvdKind::Full, _) => {
                full_svd_plan_with(square(m.max(n), m.min(n))?, p.panel, p.vectors)?.dag
            }
            (_, _, SolveKind::Triangular) => {
                triangular_solve_plan(
                    square(n, n)?,
                    Triangle::Lower,
                    Transpose::No,
                    square(n, p.rhs)?,
                )?
                .dag
            }
            (_, _, SolveKind::Cholesky) => {
                cholesky_solve_plan(square(n, n)?, square(n, p.rhs)?)?.dag
            }
            (_, _, SolveKind::Lstsq) => lstsq_plan(tall(n + p.rhs)?, n, self.tree())?.dag,
        })
    }

    fn randomized(&self) -> RandomizedSvd {
        RandomizedSvd {
            rank: self.params.rank,
            oversampling: self.params.oversampling,
            power_iterations: self.params.power_iterations,
            tree: self.tree(),
        }
    }

    fn tree(&self) -> Tree {
        Tree {
            arity: self.params.arity,
            leaf: self.params.leaf,
        }
    }

    /// Runs `tiled` and `reference` (when given) alternately `repeat` times;
    /// `reference` returns its result and its own timing (so it can prepare
    /// its input outside the clock). Only the last run's results are kept,
    /// and the previous ones are dropped before the next run starts.
    fn measure<T, R>(
        &self,
        mut tiled: impl FnMut() -> Result<(T, RunReport, usize), Error>,
        mut reference: Option<impl FnMut() -> Result<(R, f64), Error>>,
    ) -> Result<(Timings, usize, T, Option<R>), Error> {
        let mut timings = Timings::default();
        let mut last = None;
        for _ in 0..self.repeat.max(1) {
            drop(last.take());
            let start = Instant::now();
            let (result, report, tasks) = tiled()?;
            timings.tiled.push(start.elapsed().as_secs_f64());
            timings.utilization.push(report.utilization());
            let expected = match &mut reference {
                Some(reference) => {
                    let (expected, seconds) = reference()?;
                    timings.reference.push(seconds);
                    Some(expected)
                }
                None => None,
            };
            last = Some((result, report, tasks, expected));
        }
        let (result, report, tasks, expected) =
            last.ok_or(LinalgError::ZeroSize { what: "repeat" })?;
        timings.run = report;
        Ok((timings, tasks, result, expected))
    }

    pub(super) fn tsqr(
        &self,
        runtime: &Runtime,
        options: &RunOptions<'_>,
    ) -> Result<WorkloadReport, Error> {
        let (m, n, p) = (self.rows(), self.n, &self.params);
        let kernels = runtime.kernels();
        let tiled = self.algorithm == Algorithm::Qr;
        let (tile_rows, tile_cols) = if tiled {
            (self.tile, self.tile)
        } else {
            (self.tile, n)
        };
        let a = self.operand(Operand::A, tile_rows, tile_cols, || {
            BlockMatrix::random(m, n, tile_rows, tile_cols, self.seed)
        })?;
        let whole = self.uses_reference().then(|| a.to_array());
        let (mut timings, tasks, (q, r), expected) = self.measure(
            || {
                if tiled {
                    let f = runtime.qr_with_panel(&a, p.panel, p.explicit_q, options)?;
                    Ok(((f.q, f.r), f.report, f.tasks))
                } else {
                    let f = runtime.tsqr_with(&a, self.tree(), p.explicit_q, options)?;
                    let r = BlockMatrix::from_array(f.r.view(), n, n)?;
                    Ok(((f.q, r), f.report, f.tasks))
                }
            },
            whole.as_ref().map(|whole| {
                || {
                    let input = whole.clone();
                    let start = Instant::now();
                    let out = kernels.qr_whole(input, self.threads, p.explicit_q)?;
                    Ok((out, start.elapsed().as_secs_f64()))
                }
            }),
        )?;
        if let Some(q) = &q {
            self.save("Q.npy", q, &mut timings.staged)?;
        }
        self.save("R.npy", &r, &mut timings.staged)?;
        if self.check {
            match (&whole, expected) {
                (Some(whole), Some((r_ref, q_ref))) => {
                    let q = q.map(|q| q.to_array());
                    timings.residual = Some(qr_residual(
                        kernels,
                        whole,
                        q.as_ref(),
                        &r.to_array(),
                        self.threads,
                    )?);
                    timings.reference_residual = Some(qr_residual(
                        kernels,
                        whole,
                        q_ref.as_ref(),
                        &r_ref,
                        self.threads,
                    )?);
                }
                _ => timings.residual = Some(check::qr(runtime, &a, q.as_ref(), &r)?),
            }
        }
        let flops = flops::qr(m, n) * if p.explicit_q { 2.0 } else { 1.0 };
        self.finish(runtime, m, n, flops, tasks, timings)
    }

    pub(super) fn svd(
        &self,
        runtime: &Runtime,
        options: &RunOptions<'_>,
    ) -> Result<WorkloadReport, Error> {
        let (m, n, p) = (self.rows(), self.n, &self.params);
        let kernels = runtime.kernels();
        let threads = self.threads;
        // Sketch width l = rank + oversampling, capped by the matrix.
        let l = self.randomized().sketch_width(TileLayout::new(m, n, m, n)?);
        let (tile_rows, tile_cols) = match p.svd {
            SvdKind::Tall => (self.tile, n),
            SvdKind::Randomized | SvdKind::Full => (self.tile, self.tile),
        };
        let flops = match p.svd {
            SvdKind::Tall => flops::qr(m, n) * if p.vectors { 2.0 } else { 1.0 },
            SvdKind::Randomized => {
                let products = (2 + 2 * p.power_iterations) as f64 * flops::gemm(m, n, l);
                let orth = (p.power_iterations + 1) as f64 * flops::qr(m, l) * 2.0
                    + (p.power_iterations + 1) as f64 * flops::qr(n, l) * 2.0;
                products + orth
            }
            SvdKind::Full => flops::svd(m, n, p.vectors),
        };
        let a = self.operand(Operand::A, tile_rows, tile_cols, || {
            BlockMatrix::random(m, n, tile_rows, tile_cols, self.seed)
        })?;
        let whole = self.uses_reference().then(|| a.to_array());
        let omega_seed = self.seed.wrapping_add(7);
        let omega = match (p.svd, &whole) {
            (SvdKind::Randomized, Some(_)) => {
                Some(BlockMatrix::random(n, l, n, l, omega_seed)?.to_array())
            }
            _ => None,
        };
        let (mut timings, tasks, factors, reference) = self.measure(
            || {
                let f = match p.svd {
                    SvdKind::Tall => runtime.svd_tall(&a, self.tree(), p.vectors, options)?,
                    SvdKind::Full => runtime.svd_full_with(&a, p.panel, p.vectors, options)?,
                    SvdKind::Randomized => runtime.randomized_svd(
                        &a,
                        self.randomized(),
                        p.vectors,
                        omega_seed,
                        options,
                    )?,
                };
                let (report, tasks) = (f.report.clone(), f.tasks);
                Ok((f, report, tasks))
            },
            whole.as_ref().map(|whole| {
                || {
                    let input = whole.clone();
                    let start = Instant::now();
                    let out = match &omega {
                        Some(omega) => randomized_whole(
                            kernels,
                            &input,
                            omega,
                            p.power_iterations,
                            p.vectors,
                            threads,
                        )?,
                        None => kernels.svd_whole(input, threads, p.vectors)?,
                    };
                    Ok((out, start.elapsed().as_secs_f64()))
                }
            }),
        )?;
        if let Some(u) = &factors.u {
            self.save("U.npy", u, &mut timings.staged)?;
        }
        self.save_vector("s.npy", &factors.s, &mut timings.staged)?;
        if let Some(vt) = &factors.vt {
            self.save_array("Vt.npy", vt, &mut timings.staged)?;
        }
        if self.check {
            timings.residual = Some(match (&whole, &reference) {
                (Some(whole), Some(reference)) => {
                    if let (Some(u), Some(vt), SvdKind::Tall | SvdKind::Full) =
                        (&reference.u, &reference.vt, p.svd)
                    {
                        timings.reference_residual =
                            Some(svd_residual(kernels, whole, u, &reference.s, vt, threads)?);
                    }
                    match (&factors.u, &factors.vt) {
                        (Some(u), Some(vt)) => {
                            svd_residual(kernels, whole, &u.to_array(), &factors.s, vt, threads)?
                                .max(value_error(&factors.s, &reference.s))
                        }
                        _ => value_error(&factors.s, &reference.s),
                    }
                }
                _ => match (&factors.u, &factors.vt) {
                    (Some(u), Some(vt)) => check::svd_vectors(runtime, &a, u, &factors.s, vt)?,
                    _ => check::svd_values(&a, &factors.s, p.svd == SvdKind::Randomized),
                },
            });
        }
        self.finish(runtime, m, n, flops, tasks, timings)
    }

    pub(super) fn solve(
        &self,
        runtime: &Runtime,
        options: &RunOptions<'_>,
    ) -> Result<WorkloadReport, Error> {
        let (m, n, p) = (self.rows(), self.n, &self.params);
        let kernels = runtime.kernels();
        let threads = self.threads;
        let (seed, t) = (self.seed, self.tile);
        let reference = self.uses_reference();
        match p.solve {
            SolveKind::Triangular | SolveKind::Cholesky => {
                let cholesky = p.solve == SolveKind::Cholesky;
                let a = self.operand(Operand::A, t, t, || {
                    if cholesky {
                        BlockMatrix::random_spd(n, t, seed)
                    } else {
                        lower_triangular(n, t, seed)
                    }
                })?;
                if cholesky && self.file(Operand::A).is_some() {
                    a.check_symmetric("A", super::SYMMETRY_TOLERANCE)
                        .map_err(|e| self.blame(Operand::A, e.into()))?;
                }
                let b = self.operand(Operand::B, t, t, || {
                    BlockMatrix::random(n, p.rhs, t, t, seed.wrapping_add(1))
                })?;
                // The triangular solve reads A's lower triangle only: so does
                // its backward error.
                let wholes = reference.then(|| {
                    let mut a_whole = a.to_array();
                    if !cholesky {
                        for ((row, col), value) in a_whole.indexed_iter_mut() {
                            if col > row {
                                *value = 0.0;
                            }
                        }
                    }
                    (a_whole, b.to_array())
                });
                let (mut timings, tasks, x, x_ref) = self.measure(
                    || {
                        let solved = if cholesky {
                            runtime.cholesky_solve(&a, &b, options)
                        } else {
                            runtime.solve_triangular(
                                &a,
                                Triangle::Lower,
                                Transpose::No,
                                &b,
                                options,
                            )
                        }
                        .map_err(|e| self.blame(Operand::A, e))?;
                        Ok((solved.x, solved.report, solved.tasks))
                    },
                    wholes.as_ref().map(|(a_whole, b_whole)| {
                        || {
                            let (mut factor, mut x) = (a_whole.clone(), b_whole.clone());
                            let start = Instant::now();
                            let lower = |trans, factor: &Array2<f64>, x: &mut Array2<f64>| {
                                kernels.trsm_whole(
                                    Side::Left,
                                    Triangle::Lower,
                                    trans,
                                    Diagonal::NonUnit,
                                    1.0,
                                    factor.view(),
                                    x.view_mut(),
                                    threads,
                                )
                            };
                            if cholesky {
                                kernels.cholesky_whole(factor.view_mut(), threads)?;
                            }
                            lower(Transpose::No, &factor, &mut x)?;
                            if cholesky {
                                lower(Transpose::Yes, &factor, &mut x)?;
                            }
                            Ok((x, start.elapsed().as_secs_f64()))
                        }
                    }),
                )?;
                self.save_solution(&x, &mut timings.staged)?;
                if self.check {
                    timings.residual = Some(match (&wholes, &x_ref) {
                        (Some((a_whole, b_whole)), Some(x_ref)) => {
                            // Backward error ‖A·X − B‖/(‖A‖·‖X‖) of both answers
                            // (A's upper triangle mirrors the lower one for Cholesky).
                            let backward = |x: &Array2<f64>| -> Result<f64, LinalgError> {
                                let ax = kernels.matmul_whole(a_whole.view(), x.view(), threads)?;
                                Ok(relative(
                                    (&ax - b_whole).view(),
                                    tile::frobenius_norm(a_whole.view())
                                        * tile::frobenius_norm(x.view()),
                                ))
                            };
                            timings.reference_residual = Some(backward(x_ref)?);
                            backward(&x.to_array())?
                        }
                        _ => {
                            let triangle = (!cholesky).then_some(Triangle::Lower);
                            check::solve(runtime, &a, triangle, &x, &b)?
                        }
                    });
                }
                // Cholesky: the factorization and two triangular solves.
                let flops = match cholesky {
                    true => flops::cholesky(n) + 2.0 * flops::trsm(n, p.rhs),
                    false => flops::trsm(n, p.rhs),
                };
                self.finish(runtime, n, p.rhs, flops, tasks, timings)
            }
            SolveKind::Lstsq => {
                let a = self.operand(Operand::A, t, n, || BlockMatrix::random(m, n, t, n, seed))?;
                let b = self.operand(Operand::B, t, p.rhs, || {
                    BlockMatrix::random(m, p.rhs, t, p.rhs, seed.wrapping_add(1))
                })?;
                let joined = reference.then(|| {
                    let mut joined = Array2::zeros((m, n + p.rhs));
                    joined.slice_mut(s![.., ..n]).assign(&a.to_array());
                    joined.slice_mut(s![.., n..]).assign(&b.to_array());
                    joined
                });
                let (mut timings, tasks, x, x_ref) = self.measure(
                    || {
                        let solved = runtime
                            .lstsq(&a, &b, self.tree(), options)
                            .map_err(|e| self.blame(Operand::A, e))?;
                        Ok((solved.x, solved.report, solved.tasks))
                    },
                    joined.as_ref().map(|joined| {
                        || {
                            let input = tile::to_column_major(joined.view());
                            let start = Instant::now();
                            let (r, _) = kernels.qr_whole(input, threads, false)?;
                            let mut x = tile::to_column_major(r.slice(s![..n, n..]));
                            kernels.trsm_whole(
                                Side::Left,
                                Triangle::Upper,
                                Transpose::No,
                                Diagonal::NonUnit,
                                1.0,
                                r.slice(s![..n, ..n]),
                                x.view_mut(),
                                threads,
                            )?;
                            Ok((x, start.elapsed().as_secs_f64()))
                        }
                    }),
                )?;
                self.save_solution(&x, &mut timings.staged)?;
                if self.check {
                    timings.residual = Some(match &x_ref {
                        Some(x_ref) => relative(
                            (&x.to_array() - x_ref).view(),
                            tile::frobenius_norm(x_ref.view()),
                        ),
                        None => check::lstsq(runtime, &a, &x, &b)?,
                    });
                }
                self.finish(runtime, m, p.rhs, flops::qr(m, n + p.rhs), tasks, timings)
            }
        }
    }

    /// Writes `X`, as a 1-D array when the right-hand side was one.
    fn save_solution(&self, x: &BlockMatrix, staged: &mut Vec<Staged>) -> Result<(), Error> {
        let vector = match self.file(Operand::B) {
            Some(path) => wukong_linalg::npy::NpyMatrix::open_vector_or_matrix(path)?.is_vector(),
            None => false,
        };
        if vector {
            let values: Vec<f64> = x.to_array().iter().copied().collect();
            self.save_vector("X.npy", &values, staged)
        } else {
            self.save("X.npy", x, staged)
        }
    }
}
