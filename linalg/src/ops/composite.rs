//! Composite kernels: tile operations built from several backend calls
//! (CholeskyQR2, the Householder QR of stacked tiles and its update, the
//! SVD of a band matrix, the solve with a stacked `R`).

use std::sync::Arc;

use super::QrMethod;
use crate::LinalgError;
use crate::kernels::band::{Band, bidiagonal_singular_values};
use crate::kernels::{Diagonal, Side, TileBackend, Transpose, Triangle};
use crate::tile::{self, Tile, unshared as take};

pub(super) fn solve_r(
    backend: &dyn TileBackend,
    factor: &Tile,
    n: usize,
    rhs: usize,
) -> Result<Tile, LinalgError> {
    if factor.nrows() < n || factor.ncols() != n + rhs {
        return Err(crate::error::shape_mismatch(
            "solve_r",
            format!(
                "the factor is {}×{} but R·X = C needs at least {n} rows and {} columns",
                factor.nrows(),
                factor.ncols(),
                n + rhs
            ),
        ));
    }
    let largest = (0..n).map(|i| factor[[i, i]].abs()).fold(0.0, f64::max);
    let tolerance = largest * n as f64 * f64::EPSILON;
    if let Some(column) = (0..n).find(|&i| factor[[i, i]].abs() <= tolerance) {
        return Err(LinalgError::RankDeficient {
            operation: "least squares",
            detail: format!(
                "column {column} of A is (numerically) a combination of the columns before it: \
                 |R[{column},{column}]| = {:e} ≤ {tolerance:e}",
                factor[[column, column]].abs()
            ),
        });
    }
    let r = factor.slice(ndarray::s![..n, ..n]);
    let mut x = tile::to_column_major(factor.slice(ndarray::s![..n, n..]));
    backend.trsm(
        Side::Left,
        Triangle::Upper,
        Transpose::No,
        Diagonal::NonUnit,
        1.0,
        r,
        x.view_mut(),
    )?;
    Ok(x)
}

/// `A = Q·R` of a tall tile by CholeskyQR2: `R₁ = chol(AᵀA)`, `Q₁ = A·R₁⁻¹`,
/// then once more on `Q₁` (`R = R₂·R₁`), so nearly all the work is the
/// products `AᵀA` and triangular solves. The second pass restores
/// orthogonality to rounding level whenever `Q₁` is well conditioned, which is
/// checked: if `‖Q₁ᵀQ₁ − I‖_F > ½` or a Cholesky factorization fails (`A` is
/// ill-conditioned, about κ(A) > 10⁷), `None` tells the caller to use
/// Householder instead.
pub fn cholesky_qr2(
    backend: &dyn TileBackend,
    a: &Tile,
    explicit_q: bool,
) -> Result<Option<(Tile, Option<Tile>)>, LinalgError> {
    let n = a.ncols();
    if a.nrows() < n || n == 0 {
        return Ok(None);
    }
    // Row blocks small enough to stay in cache while each is solved and
    // multiplied: two passes over A in all, none over a Q that is not kept.
    let block = (CHOLQR_BLOCK_BYTES / (8 * n)).max(n);
    let starts: Vec<usize> = (0..a.nrows()).step_by(block).collect();
    let rows = |start: usize| start..(start + block).min(a.nrows());
    // `L⁻ᵀ` as a matrix (n³/3 flops): products by it run at GEMM speed, where
    // a triangular solve against a tall block runs at a third of it. The
    // check of Q₁ below catches the accuracy this could cost.
    let inverse_t = |l: &Tile| -> Result<Tile, LinalgError> {
        let mut x = tile::zeros(n, n);
        x.diag_mut().fill(1.0);
        backend.trsm(
            Side::Left,
            Triangle::Lower,
            Transpose::No,
            Diagonal::NonUnit,
            1.0,
            l.view(),
            x.view_mut(),
        )?;
        Ok(tile::to_column_major(x.t()))
    };
    let mut l1 = tile::zeros(n, n);
    for &start in &starts {
        add_lower_gram(
            backend,
            a.slice(ndarray::s![rows(start), ..]),
            l1.view_mut(),
        )?;
    }
    if backend.potrf(l1.view_mut()).is_err() {
        return Ok(None);
    }
    // Q₁ = A·L₁⁻ᵀ block by block, each block's Gram matrix added while it is
    // in cache; Q₁ is kept only when Q is wanted.
    let l1_inverse_t = inverse_t(&l1)?;
    let mut l2 = tile::zeros(n, n);
    let mut q = explicit_q.then(|| tile::zeros(a.nrows(), n));
    let mut scratch = tile::zeros(block.min(a.nrows()), n);
    for &start in &starts {
        let range = rows(start);
        let mut target = match q.as_mut() {
            Some(q) => q.slice_mut(ndarray::s![range.clone(), ..]),
            None => scratch.slice_mut(ndarray::s![..range.len(), ..]),
        };
        let block = a.slice(ndarray::s![range, ..]);
        times_upper(backend, block, l1_inverse_t.view(), 0.0, target.view_mut())?;
        add_lower_gram(backend, target.view(), l2.view_mut())?;
    }
    let mut departure = 0.0;
    for j in 0..n {
        for i in j..n {
            let d = l2[[i, j]] - if i == j { 1.0 } else { 0.0 };
            departure += if i == j { d * d } else { 2.0 * d * d };
        }
    }
    // NaN compares false: a NaN departure declines too.
    let close = departure.sqrt() <= 0.5;
    if !close || backend.potrf(l2.view_mut()).is_err() {
        return Ok(None);
    }
    // R = R₂·R₁ = (L₁·L₂)ᵀ.
    let mut product = tile::zeros(n, n);
    backend.gemm(
        Transpose::No,
        Transpose::No,
        1.0,
        l1.view(),
        l2.view(),
        0.0,
        product.view_mut(),
    )?;
    let r = tile::to_column_major(product.t());
    // NaN and ∞ in A reach the Gram matrices and fail the tests above; this
    // keeps the promise (finite A, or `None`) should a kernel drop a NaN.
    if tile::first_non_finite(r.view()).is_some() {
        return Ok(None);
    }
    if let Some(q) = q.as_mut() {
        let l2_inverse_t = inverse_t(&l2)?;
        for &start in &starts {
            let range = rows(start);
            let mut block = scratch.slice_mut(ndarray::s![..range.len(), ..]);
            block.assign(&q.slice(ndarray::s![range.clone(), ..]));
            let target = q.slice_mut(ndarray::s![range, ..]);
            times_upper(backend, block.view(), l2_inverse_t.view(), 0.0, target)?;
        }
    }
    Ok(Some((r, q)))
}

/// Row blocks of CholeskyQR2 hold about this many bytes (half a core's L2
/// cache: the block and its product stay there together).
const CHOLQR_BLOCK_BYTES: usize = 1 << 19;

/// Products of CholeskyQR2 split their triangular operand down to blocks of
/// this many columns: below it the saved flops cost more than the smaller
/// products lose (8192×128 tiles, faer: 32 takes 25% off the leaf, 64 18%).
const TRIANGULAR_SPLIT: usize = 32;

/// `G ← G + XᵀX` on the lower triangle of `G` (the strict upper triangle gets
/// partial sums): the triangle is halved recursively, so only blocks of
/// [`TRIANGULAR_SPLIT`] columns on the diagonal are computed in full and
/// nearly half the flops of one product `XᵀX` are saved.
fn add_lower_gram(
    backend: &dyn TileBackend,
    x: ndarray::ArrayView2<'_, f64>,
    mut g: ndarray::ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let n = x.ncols();
    if n <= TRIANGULAR_SPLIT {
        return backend.gemm(Transpose::Yes, Transpose::No, 1.0, x, x, 1.0, g);
    }
    let h = n / 2;
    let (left, right) = (x.slice(ndarray::s![.., ..h]), x.slice(ndarray::s![.., h..]));
    let (g11, g21, g22) = g.multi_slice_mut((
        ndarray::s![..h, ..h],
        ndarray::s![h.., ..h],
        ndarray::s![h.., h..],
    ));
    add_lower_gram(backend, left, g11)?;
    backend.gemm(Transpose::Yes, Transpose::No, 1.0, right, left, 1.0, g21)?;
    add_lower_gram(backend, right, g22)
}

/// `Y ← X·U + β·Y` for an upper triangular `U`, whose zero lower triangle is
/// skipped down to blocks of [`TRIANGULAR_SPLIT`] columns.
fn times_upper(
    backend: &dyn TileBackend,
    x: ndarray::ArrayView2<'_, f64>,
    u: ndarray::ArrayView2<'_, f64>,
    beta: f64,
    mut y: ndarray::ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let n = u.ncols();
    if n <= TRIANGULAR_SPLIT {
        return backend.gemm(Transpose::No, Transpose::No, 1.0, x, u, beta, y);
    }
    let h = n / 2;
    let (first, second) = (x.slice(ndarray::s![.., ..h]), x.slice(ndarray::s![.., h..]));
    let (y1, mut y2) = y.multi_slice_mut((ndarray::s![.., ..h], ndarray::s![.., h..]));
    times_upper(backend, first, u.slice(ndarray::s![..h, ..h]), beta, y1)?;
    // Y₂ = X₁·U₁₂ + X₂·U₂₂ (+ β·Y₂).
    let u12 = u.slice(ndarray::s![..h, h..]);
    backend.gemm(
        Transpose::No,
        Transpose::No,
        1.0,
        first,
        u12,
        beta,
        y2.view_mut(),
    )?;
    times_upper(backend, second, u.slice(ndarray::s![h.., h..]), 1.0, y2)
}

/// Tiles of the same width stacked vertically (the tile itself if only one).
pub(super) fn stack(inputs: Vec<Arc<Tile>>, cols: usize) -> Result<Tile, LinalgError> {
    if let Some(bad) = inputs.iter().find(|t| t.ncols() != cols) {
        return Err(crate::error::shape_mismatch(
            "qr",
            format!(
                "a stacked tile has {} columns, expected {cols}",
                bad.ncols()
            ),
        ));
    }
    if inputs.len() == 1 {
        return Ok(inputs.into_iter().next().map(take).unwrap_or_default());
    }
    let mut whole = tile::zeros(inputs.iter().map(|t| t.nrows()).sum(), cols);
    let mut row = 0;
    for input in &inputs {
        let height = input.nrows();
        whole
            .slice_mut(ndarray::s![row..row + height, ..])
            .assign(&**input);
        row += height;
    }
    Ok(whole)
}

/// `[B₁; …] ← Qᵀ·[B₁; …]` (or `Q·`) for a factored `F`, `C`; the rows of
/// `B₁` below those facing `F` are passed through.
pub(super) fn house_apply(
    mut inputs: Vec<Arc<Tile>>,
    transpose: bool,
) -> Result<Vec<Tile>, LinalgError> {
    let parts: Vec<Arc<Tile>> = inputs.split_off(2);
    let (factored, coeff) = (&inputs[0], &inputs[1]);
    let cols = parts.first().map_or(0, |p| p.ncols());
    let below: usize = parts.iter().skip(1).map(|p| p.nrows()).sum();
    let first_rows = parts.first().map_or(0, |p| p.nrows());
    let top = factored
        .nrows()
        .checked_sub(below)
        .filter(|&t| t <= first_rows);
    let Some(top) = top else {
        return Err(crate::error::shape_mismatch(
            "tile qr update",
            format!(
                "the factored stack has {} rows but the tiles to update have {} and {below}",
                factored.nrows(),
                first_rows
            ),
        ));
    };
    // A TS step (an upper-triangular R on top of a tile, T in one block):
    // the reflectors are [I; V₂], which `ts_apply` exploits.
    let ts = parts.len() == 2
        && top == factored.ncols().min(factored.nrows())
        && coeff.dim() == (top, top)
        && parts[1].ncols() == cols
        && (0..top).all(|j| {
            factored
                .slice(ndarray::s![j + 1..top, j])
                .iter()
                .all(|&v| v == 0.0)
        });
    let parts = match ts {
        true => match <[Arc<Tile>; 2]>::try_from(parts) {
            Ok([b1, b2]) => {
                let (mut first, mut second) = (take(b1), take(b2));
                crate::kernels::ts_apply(
                    factored,
                    coeff,
                    first.slice_mut(ndarray::s![..top, ..]),
                    second.view_mut(),
                    transpose,
                );
                return Ok(vec![first, second]);
            }
            Err(parts) => parts,
        },
        false => parts,
    };
    let mut first = parts.first().cloned().map(take).unwrap_or_default();
    let mut stacked = tile::zeros(factored.nrows(), cols);
    stacked
        .slice_mut(ndarray::s![..top, ..])
        .assign(&first.slice(ndarray::s![..top, ..]));
    let mut row = top;
    for part in parts.iter().skip(1) {
        if part.ncols() != cols {
            return Err(crate::error::shape_mismatch(
                "tile qr update",
                format!("tiles of {} and {cols} columns", part.ncols()),
            ));
        }
        stacked
            .slice_mut(ndarray::s![row..row + part.nrows(), ..])
            .assign(&**part);
        row += part.nrows();
    }
    crate::kernels::qr_apply(factored, coeff, &mut stacked, transpose);
    first
        .slice_mut(ndarray::s![..top, ..])
        .assign(&stacked.slice(ndarray::s![..top, ..]));
    let mut out = vec![first];
    let mut row = top;
    for part in parts.iter().skip(1) {
        out.push(tile::to_column_major(
            stacked.slice(ndarray::s![row..row + part.nrows(), ..]),
        ));
        row += part.nrows();
    }
    Ok(out)
}

/// The band matrix `[R₀, L₀ᵀ, R₁, …]` describes (see [`TileOp::BandSvd`](super::TileOp::BandSvd)).
fn gather_band(inputs: &[Arc<Tile>], n: usize, b: usize) -> Result<Band, LinalgError> {
    let nt = n.div_ceil(b);
    expect("band svd", inputs, (2 * nt).saturating_sub(1))?;
    let mut band = Band::zeros(n, b);
    for (index, part) in inputs.iter().enumerate() {
        let k = index / 2;
        let (row0, col0) = (k * b, (k + index % 2) * b);
        let width = b.min(n - col0);
        // R: upper triangle of the diagonal tile; Lᵀ: upper triangle of the
        // transposed tile right of it (L's entry (r, c) is Lᵀ's (c, r)).
        let (want_rows, want_cols) = match index % 2 {
            0 => (width, width),
            _ => (width, b.min(n - row0)),
        };
        if part.nrows() > want_rows || part.ncols() != want_cols {
            return Err(crate::error::shape_mismatch(
                "band svd",
                format!(
                    "band part {index} is {}×{}, expected at most {want_rows}×{want_cols}",
                    part.nrows(),
                    part.ncols()
                ),
            ));
        }
        for c in 0..part.ncols() {
            for r in 0..part.nrows().min(c + 1) {
                let v = part[[r, c]];
                if index % 2 == 0 {
                    band.set(row0 + r, col0 + c, v);
                } else {
                    band.set(row0 + c, col0 + r, v);
                }
            }
        }
    }
    if let Some((row, col, value)) = band.first_non_finite() {
        return Err(LinalgError::NonFinite {
            matrix: "band form of A",
            row,
            col,
            value,
        });
    }
    Ok(band)
}

/// [`TileOp::BandSvd`](super::TileOp::BandSvd).
pub(super) fn band_svd(
    backend: &dyn TileBackend,
    inputs: &[Arc<Tile>],
    rows: usize,
    n: usize,
    b: usize,
    vectors: bool,
) -> Result<Vec<Tile>, LinalgError> {
    let b = b.max(1);
    let band = gather_band(inputs, n, b)?;
    let column = |s: Vec<f64>| {
        Tile::from_shape_vec((s.len(), 1), s)
            .map_err(|e| crate::error::shape_mismatch("band svd", format!("singular values: {e}")))
    };
    // The task runs alone at the end of the graph: use the executor's cores.
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    if !vectors {
        let (d, e) = band.into_bidiagonal_on(threads);
        return Ok(vec![column(bidiagonal_singular_values(d, e)?)?]);
    }
    let parts = backend.svd_whole(band.to_dense(), threads, true)?;
    let (Some(u), Some(vt)) = (parts.u, parts.vt) else {
        return Err(LinalgError::NoConvergence {
            operation: "band svd",
            detail: "the dense SVD returned no vectors".into(),
        });
    };
    let mut out = vec![column(parts.s)?];
    let (mt, nt) = (rows.div_ceil(b), n.div_ceil(b));
    for i in 0..mt {
        for j in 0..nt {
            let (r0, c0) = (i * b, j * b);
            let (h, w) = (b.min(rows - r0), b.min(n - c0));
            let mut t = tile::zeros(h, w);
            if r0 < n {
                let live = h.min(n - r0);
                t.slice_mut(ndarray::s![..live, ..])
                    .assign(&u.slice(ndarray::s![r0..r0 + live, c0..c0 + w]));
            }
            out.push(t);
        }
    }
    for i in 0..nt {
        for j in 0..nt {
            let (r0, c0) = (i * b, j * b);
            let (h, w) = (b.min(n - r0), b.min(n - c0));
            out.push(tile::to_column_major(
                vt.slice(ndarray::s![c0..c0 + w, r0..r0 + h]).t(),
            ));
        }
    }
    Ok(out)
}

/// QR of tiles stacked vertically; `Q` is cut back into one block per input.
/// With `input_row`, non-finite values of the stack are an error on `A`.
pub(super) fn qr_stacked(
    backend: &dyn TileBackend,
    inputs: Vec<Arc<Tile>>,
    (cols, parts): (usize, usize),
    (explicit_q, method): (bool, QrMethod),
    input_row: Option<u64>,
) -> Result<Vec<Tile>, LinalgError> {
    expect("qr", &inputs, parts)?;
    let heights: Vec<usize> = inputs.iter().map(|t| t.nrows()).collect();
    let stacked = stack(inputs, cols)?;
    // A NaN or ∞ in the tile makes CholeskyQR2 decline (its Gram matrix is
    // not finite), so the scan below runs only on the fallback path.
    let fast = match method {
        QrMethod::CholeskyQr2 => cholesky_qr2(backend, &stacked, explicit_q)?,
        _ => None,
    };
    let (r, q) = match fast {
        Some(factors) => factors,
        None => {
            if let Some(row) = input_row {
                tile::check_finite("A", stacked.view(), (row as usize, 0))?;
            }
            backend.qr(stacked, explicit_q)?
        }
    };
    let mut out = Vec::with_capacity(parts + 1);
    if let Some(q) = q {
        if parts == 1 {
            out.push(q);
        } else {
            let mut row = 0;
            for height in heights {
                out.push(tile::to_column_major(
                    q.slice(ndarray::s![row..row + height, ..]),
                ));
                row += height;
            }
        }
    }
    out.push(r);
    Ok(out)
}

/// Checks that an operation got as many input tiles as it reads.
pub(super) fn expect(
    operation: &'static str,
    inputs: &[Arc<Tile>],
    expected: usize,
) -> Result<(), LinalgError> {
    if inputs.len() != expected {
        return Err(LinalgError::WrongInputCount {
            operation,
            expected,
            got: inputs.len(),
        });
    }
    Ok(())
}
