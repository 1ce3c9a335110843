//! Residuals computed in tiles on the runtime's own executors, for runs
//! without the whole-matrix reference: each check composes one graph of
//! products and differences and runs it, so no matrix is ever held whole.
//! Triangular factors enter as triangles, so their zero tiles cost nothing.

use ndarray::Array2;
use wukong_linalg::{BlockMatrix, Graph, Lazy, Triangle, tile};

use crate::{Error, Runtime};

/// Frobenius norm of one lazily composed result.
fn norm(runtime: &Runtime, graph: &Graph, result: &Lazy) -> Result<f64, Error> {
    let (mut results, _) = runtime.compute(graph, &[result], &Default::default())?;
    Ok(results.pop().map_or(0.0, |m| m.frobenius_norm()))
}

/// Frobenius norm of one triangle (diagonal included) of a square matrix.
fn triangle_norm(matrix: &BlockMatrix, triangle: Triangle) -> f64 {
    let layout = matrix.layout();
    let (grid_rows, grid_cols) = layout.grid();
    let mut sum = 0.0;
    for i in 0..grid_rows {
        for j in 0..grid_cols {
            let (r0, c0) = (layout.row_offset(i), layout.col_offset(j));
            for ((r, c), v) in matrix.tile(i, j).indexed_iter() {
                let inside = match triangle {
                    Triangle::Lower => r0 + r >= c0 + c,
                    Triangle::Upper => r0 + r <= c0 + c,
                };
                if inside {
                    sum += v * v;
                }
            }
        }
    }
    sum.sqrt()
}

/// `‖A − L·Lᵀ‖/‖A‖`.
pub(super) fn cholesky(runtime: &Runtime, a: &BlockMatrix, l: &BlockMatrix) -> Result<f64, Error> {
    let graph = Graph::new();
    let la = graph.input(a)?;
    let ll = graph.input_triangle(l, Triangle::Lower)?;
    let residual = la.axpby(1.0, -1.0, &ll.matmul(&ll.t())?)?;
    Ok(norm(runtime, &graph, &residual)? / a.frobenius_norm())
}

/// `‖C − A·B‖/(‖A‖·‖B‖)`.
pub(super) fn gemm(
    runtime: &Runtime,
    a: &BlockMatrix,
    b: &BlockMatrix,
    c: &BlockMatrix,
) -> Result<f64, Error> {
    let graph = Graph::new();
    let (la, lb, lc) = (graph.input(a)?, graph.input(b)?, graph.input(c)?);
    let residual = lc.axpby(1.0, -1.0, &la.matmul(&lb)?)?;
    Ok(norm(runtime, &graph, &residual)? / (a.frobenius_norm() * b.frobenius_norm()))
}

/// `‖A − Q·R‖/‖A‖`, or without `Q` `‖AᵀA − RᵀR‖/‖A‖²`; `R` is upper
/// triangular in tiles that conform with `Q`'s columns (and `A`'s).
pub(super) fn qr(
    runtime: &Runtime,
    a: &BlockMatrix,
    q: Option<&BlockMatrix>,
    r: &BlockMatrix,
) -> Result<f64, Error> {
    let graph = Graph::new();
    let la = graph.input(a)?;
    let lr = graph.input_triangle(r, Triangle::Upper)?;
    let scale = a.frobenius_norm();
    match q {
        Some(q) => {
            let lq = graph.input(q)?;
            let residual = la.axpby(1.0, -1.0, &lq.matmul(&lr)?)?;
            Ok(norm(runtime, &graph, &residual)? / scale)
        }
        None => {
            let residual = la.t().matmul(&la)?.axpby(1.0, -1.0, &lr.t().matmul(&lr)?)?;
            Ok(norm(runtime, &graph, &residual)? / (scale * scale))
        }
    }
}

/// `‖A − U·diag(s)·Vᵀ‖/‖A‖`.
pub(super) fn svd_vectors(
    runtime: &Runtime,
    a: &BlockMatrix,
    u: &BlockMatrix,
    s: &[f64],
    vt: &Array2<f64>,
) -> Result<f64, Error> {
    let layout = a.layout();
    let u = u.retiled(layout.tile_rows(), u.layout().tile_cols())?;
    let mut svt = tile::to_column_major(vt.view());
    for (mut row, &sigma) in svt.rows_mut().into_iter().zip(s) {
        row.mapv_inplace(|x| x * sigma);
    }
    let svt = BlockMatrix::from_array(svt.view(), u.layout().tile_cols(), layout.tile_cols())?;
    let graph = Graph::new();
    let (la, lu, lsvt) = (graph.input(a)?, graph.input(&u)?, graph.input(&svt)?);
    let residual = la.axpby(1.0, -1.0, &lu.matmul(&lsvt)?)?;
    Ok(norm(runtime, &graph, &residual)? / a.frobenius_norm())
}

/// For all singular values of `A`: `|‖A‖² − Σσ²|/‖A‖²`, which is zero in
/// exact arithmetic. For the leading ones of a truncated SVD:
/// `√(1 − Σσ²/‖A‖²)`, the relative error `‖A − U·Σ·Vᵀ‖/‖A‖` of the rank-k
/// approximation they stand for (exact when the sketch's basis is).
pub(super) fn svd_values(a: &BlockMatrix, s: &[f64], truncated: bool) -> f64 {
    let total = a.frobenius_norm().powi(2);
    let kept: f64 = s.iter().map(|x| x * x).sum();
    if truncated {
        (1.0 - kept / total).max(0.0).sqrt()
    } else {
        (total - kept).abs() / total
    }
}

/// `‖A·X − B‖/(‖A‖·‖X‖)`, reading only `triangle` of `A` when given.
pub(super) fn solve(
    runtime: &Runtime,
    a: &BlockMatrix,
    triangle: Option<Triangle>,
    x: &BlockMatrix,
    b: &BlockMatrix,
) -> Result<f64, Error> {
    let graph = Graph::new();
    let (la, scale) = match triangle {
        Some(t) => (graph.input_triangle(a, t)?, triangle_norm(a, t)),
        None => (graph.input(a)?, a.frobenius_norm()),
    };
    let x = x.retiled(a.layout().tile_cols(), b.layout().tile_cols())?;
    let (lx, lb) = (graph.input(&x)?, graph.input(b)?);
    let residual = la.matmul(&lx)?.axpby(1.0, -1.0, &lb)?;
    Ok(norm(runtime, &graph, &residual)? / (scale * x.frobenius_norm()))
}

/// Least squares: `‖Aᵀ(A·X − B)‖/(‖A‖·(‖A‖·‖X‖ + ‖B‖))`, zero exactly when
/// `X` satisfies the normal equations.
pub(super) fn lstsq(
    runtime: &Runtime,
    a: &BlockMatrix,
    x: &BlockMatrix,
    b: &BlockMatrix,
) -> Result<f64, Error> {
    let x = x.retiled(a.layout().tile_cols(), b.layout().tile_cols())?;
    let graph = Graph::new();
    let (la, lx, lb) = (graph.input(a)?, graph.input(&x)?, graph.input(b)?);
    let gradient = la.t().matmul(&la.matmul(&lx)?.axpby(1.0, -1.0, &lb)?)?;
    let scale = a.frobenius_norm();
    Ok(norm(runtime, &graph, &gradient)?
        / (scale * (scale * x.frobenius_norm() + b.frobenius_norm())))
}
