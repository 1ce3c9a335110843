use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{
    LltError, LltRegularization, cholesky_in_place, cholesky_in_place_scratch,
};
use faer::linalg::householder;
use faer::linalg::qr::no_pivoting::factor as qr_factor;
use faer::linalg::svd::{self as faer_svd, ComputeSvdVectors};
use faer::linalg::triangular_solve as solve;
use faer::{Accum, ColMut, Conj, MatMut, MatRef, Par};
use ndarray::{ArrayView2, ArrayViewMut2, CowArray, Ix2, s};

use super::sealed::Raw;
use super::{BackendKind, Diagonal, Side, SvdParts, Transpose, Triangle};
use crate::tile::Tile;
use crate::{LinalgError, tile};

/// Kernels from faer, in pure Rust. Tile kernels run with `Par::Seq`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaerBackend;

fn mat_ref<'a>(view: &'a ArrayView2<'_, f64>) -> MatRef<'a, f64> {
    let strides = view.strides();
    // SAFETY: the view is valid for reads of `nrows × ncols` elements at these
    // strides for as long as it is borrowed, which bounds the returned lifetime.
    unsafe {
        MatRef::from_raw_parts(
            view.as_ptr(),
            view.nrows(),
            view.ncols(),
            strides[0],
            strides[1],
        )
    }
}

fn mat_mut<'a>(view: &'a mut ArrayViewMut2<'_, f64>) -> MatMut<'a, f64> {
    let (rows, cols) = view.dim();
    let (rs, cs) = (view.strides()[0], view.strides()[1]);
    // SAFETY: a mutable ndarray view is unique and its elements do not alias
    // (ndarray never hands out mutable views with zero or overlapping strides).
    unsafe { MatMut::from_raw_parts_mut(view.as_mut_ptr(), rows, cols, rs, cs) }
}

/// Turns `β` into faer's accumulate mode, scaling `C` first where needed.
fn accumulate(beta: f64, scale: impl FnOnce(f64)) -> Accum {
    if beta == 0.0 {
        Accum::Replace
    } else {
        if beta != 1.0 {
            scale(beta);
        }
        Accum::Add
    }
}

/// Below this many uses of each element, an operand is not worth copying.
const COPY_REUSE: usize = 256;

/// `op(X)` as a column-major matrix: a view when it already is one, else a
/// copy when each of its elements is used at least [`COPY_REUSE`] times
/// (`reuse`: the product's other dimension). faer's matrix product runs about
/// twice as fast when both factors are column-major (measured on 512 and 1024
/// tiles), but a transposing copy is slow: on a 8192×128 operand used 128 times
/// it took longer (10 ms) than the whole product on the strided view (4.5 ms).
fn column_major_op<'a>(
    view: &'a ArrayView2<'_, f64>,
    trans: Transpose,
    reuse: usize,
) -> CowArray<'a, f64, Ix2> {
    let op = match trans {
        Transpose::No => view.view(),
        Transpose::Yes => view.t(),
    };
    if op.nrows() <= 1 || op.strides()[0] == 1 || reuse < COPY_REUSE {
        CowArray::from(op)
    } else {
        CowArray::from(tile::to_column_major(op))
    }
}

#[allow(clippy::too_many_arguments)] // the BLAS signature plus the parallelism
fn gemm_with(
    par: Par,
    trans_a: Transpose,
    trans_b: Transpose,
    alpha: f64,
    a: &ArrayView2<'_, f64>,
    b: &ArrayView2<'_, f64>,
    beta: f64,
    c: &mut ArrayViewMut2<'_, f64>,
) {
    let (m, n) = c.dim();
    if trans_a == Transpose::Yes && n < COPY_REUSE && m >= COPY_REUSE {
        // A large A read transposed against a narrow B (Aᵀ·Q in the
        // randomized SVD): Cᵀ = op(B)ᵀ·A reads A as stored and copies only
        // the small op(B)ᵀ; 41 against 32 GFLOP/s on 2048² tiles, 110 columns.
        let flipped = match trans_b {
            Transpose::No => Transpose::Yes,
            Transpose::Yes => Transpose::No,
        };
        let bt = column_major_op(b, flipped, usize::MAX);
        let mut ct = tile::zeros(n, m);
        product(par, alpha, &bt.view(), a, 0.0, &mut ct.view_mut());
        if beta == 0.0 {
            c.assign(&ct.t());
        } else {
            c.zip_mut_with(&ct.t(), |x, &y| *x = beta * *x + y);
        }
        return;
    }
    let (a, b) = (
        column_major_op(a, trans_a, n),
        column_major_op(b, trans_b, m),
    );
    product(par, alpha, &a.view(), &b.view(), beta, c);
}

/// `C ← α·A·B + β·C` for column-major `A` and `B`.
fn product(
    par: Par,
    alpha: f64,
    a: &ArrayView2<'_, f64>,
    b: &ArrayView2<'_, f64>,
    beta: f64,
    c: &mut ArrayViewMut2<'_, f64>,
) {
    let accum = accumulate(beta, |beta| c.mapv_inplace(|x| x * beta));
    faer::linalg::matmul::matmul(mat_mut(c), accum, mat_ref(a), mat_ref(b), alpha, par);
}

/// Below this order a diagonal block of SYRK is computed as a full product
/// into scratch space, of which one triangle is kept.
const SYRK_BASE: usize = 128;

/// `C ← α·L·R + β·C` on one triangle of `C`, where `R = Lᵀ` and both are
/// column-major: halves the triangle recursively so that nearly all the work
/// is large square-ish products (faer's triangular product is about 2.5× slower).
fn syrk_recursive(
    triangle: Triangle,
    alpha: f64,
    l: ArrayView2<'_, f64>,
    r: ArrayView2<'_, f64>,
    beta: f64,
    mut c: ArrayViewMut2<'_, f64>,
) {
    let n = c.nrows();
    if n <= SYRK_BASE {
        let mut full = tile::zeros(n, n);
        product(Par::Seq, alpha, &l, &r, 0.0, &mut full.view_mut());
        for j in 0..n {
            let rows = match triangle {
                Triangle::Lower => j..n,
                Triangle::Upper => 0..j + 1,
            };
            for i in rows {
                c[[i, j]] = if beta == 0.0 {
                    full[[i, j]]
                } else {
                    full[[i, j]] + beta * c[[i, j]]
                };
            }
        }
        return;
    }
    let h = n / 2;
    let (c11, mut off_diagonal, c22) = match triangle {
        Triangle::Lower => c.multi_slice_mut((s![..h, ..h], s![h.., ..h], s![h.., h..])),
        Triangle::Upper => c.multi_slice_mut((s![..h, ..h], s![..h, h..], s![h.., h..])),
    };
    syrk_recursive(
        triangle,
        alpha,
        l.slice(s![..h, ..]),
        r.slice(s![.., ..h]),
        beta,
        c11,
    );
    let (rows, cols) = match triangle {
        Triangle::Lower => (l.slice(s![h.., ..]), r.slice(s![.., ..h])),
        Triangle::Upper => (l.slice(s![..h, ..]), r.slice(s![.., h..])),
    };
    product(Par::Seq, alpha, &rows, &cols, beta, &mut off_diagonal);
    syrk_recursive(
        triangle,
        alpha,
        l.slice(s![h.., ..]),
        r.slice(s![.., h..]),
        beta,
        c22,
    );
}

impl Raw for FaerBackend {
    fn raw_kind(&self) -> BackendKind {
        BackendKind::Faer
    }

    fn raw_gemm(
        &self,
        threads: usize,
        trans_a: Transpose,
        trans_b: Transpose,
        alpha: f64,
        a: &ArrayView2<'_, f64>,
        b: &ArrayView2<'_, f64>,
        beta: f64,
        c: &mut ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError> {
        gemm_with(par(threads), trans_a, trans_b, alpha, a, b, beta, c);
        Ok(())
    }

    fn raw_syrk(
        &self,
        triangle: Triangle,
        trans: Transpose,
        alpha: f64,
        a: &ArrayView2<'_, f64>,
        beta: f64,
        c: &mut ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError> {
        let other = match trans {
            Transpose::No => Transpose::Yes,
            Transpose::Yes => Transpose::No,
        };
        let n = c.nrows();
        let (l, r) = (column_major_op(a, trans, n), column_major_op(a, other, n));
        syrk_recursive(triangle, alpha, l.view(), r.view(), beta, c.view_mut());
        Ok(())
    }

    fn raw_trsm(
        &self,
        threads: usize,
        side: Side,
        triangle: Triangle,
        trans: Transpose,
        diagonal: Diagonal,
        alpha: f64,
        a: &ArrayView2<'_, f64>,
        b: &mut ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError> {
        if alpha != 1.0 {
            b.mapv_inplace(|x| x * alpha);
        }
        let a = mat_ref(a);
        let b = mat_mut(b);
        // X·op(A) = B is op(A)ᵀ·Xᵀ = Bᵀ: a left solve on the transposed views.
        let (a, b) = match (side, trans) {
            (Side::Left, Transpose::No) => (a, b),
            (Side::Left, Transpose::Yes) => (a.transpose(), b),
            (Side::Right, Transpose::No) => (a.transpose(), b.transpose_mut()),
            (Side::Right, Transpose::Yes) => (a, b.transpose_mut()),
        };
        let effective_lower = matches!(
            (triangle, side, trans),
            (Triangle::Lower, Side::Left, Transpose::No)
                | (Triangle::Lower, Side::Right, Transpose::Yes)
                | (Triangle::Upper, Side::Left, Transpose::Yes)
                | (Triangle::Upper, Side::Right, Transpose::No)
        );
        let par = par(threads);
        match (effective_lower, diagonal) {
            (true, Diagonal::NonUnit) => solve::solve_lower_triangular_in_place(a, b, par),
            (true, Diagonal::Unit) => solve::solve_unit_lower_triangular_in_place(a, b, par),
            (false, Diagonal::NonUnit) => solve::solve_upper_triangular_in_place(a, b, par),
            (false, Diagonal::Unit) => solve::solve_unit_upper_triangular_in_place(a, b, par),
        }
        Ok(())
    }

    fn raw_cholesky(
        &self,
        threads: usize,
        a: &mut ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError> {
        let par = par(threads);
        let n = a.nrows();
        let mut buffer =
            MemBuffer::new(cholesky_in_place_scratch::<f64>(n, par, Default::default()));
        let stack = MemStack::new(&mut buffer);
        cholesky_in_place(
            mat_mut(a),
            LltRegularization::default(),
            par,
            stack,
            Default::default(),
        )
        .map(|_| ())
        .map_err(|error| match error {
            LltError::NonPositivePivot { index } => LinalgError::NotPositiveDefinite {
                tile: 0,
                pivot: index,
                row: index,
            },
        })
    }

    fn raw_qr(
        &self,
        threads: usize,
        a: Tile,
        explicit_q: bool,
    ) -> Result<(Tile, Option<Tile>), LinalgError> {
        Ok(qr(par(threads), a, explicit_q))
    }

    fn raw_svd(&self, threads: usize, a: Tile, vectors: bool) -> Result<SvdParts, LinalgError> {
        svd(par(threads), a, vectors)
    }
}

/// Householder QR in place with faer's blocked algorithm; `Q` is formed by
/// applying the reflectors to the first `k` columns of the identity.
fn qr(par: Par, mut a: Tile, explicit_q: bool) -> (Tile, Option<Tile>) {
    let (m, n) = a.dim();
    let k = m.min(n);
    if k == 0 {
        return (tile::zeros(k, n), explicit_q.then(|| tile::zeros(m, k)));
    }
    let coeff = factor(par, &mut a, false);
    let r = tile::upper_rows(a.view(), k);
    let q = explicit_q.then(|| {
        let mut q = tile::zeros(m, k);
        for i in 0..k {
            q[[i, i]] = 1.0;
        }
        apply(par, &a, &coeff, &mut q, false);
        q
    });
    (r, q)
}

/// Householder QR of `a` in place, keeping the factored form: `a` ends with
/// `R` on and above the diagonal and the reflectors below; the returned
/// factor `T` (`k × k`, upper triangular, one block: `Q = I − V·T⁻¹·Vᵀ`)
/// completes them, so that [`ts_apply`] can use it whole.
pub(crate) fn qr_factored(a: &mut Tile) -> Tile {
    factor(Par::Seq, a, true)
}

fn factor(par: Par, a: &mut Tile, one_block: bool) -> Tile {
    let (m, n) = a.dim();
    let k = m.min(n);
    if k == 0 {
        return tile::zeros(1, 0);
    }
    let block = match one_block {
        true => k,
        false => qr_factor::recommended_block_size::<f64>(m, n).clamp(1, k),
    };
    let mut coeff = tile::zeros(block, k);
    let scratch = qr_factor::qr_in_place_scratch::<f64>(m, n, block, par, Default::default());
    let mut buffer = MemBuffer::new(scratch);
    let mut view = a.view_mut();
    qr_factor::qr_in_place(
        mat_mut(&mut view),
        mat_mut(&mut coeff.view_mut()),
        par,
        MemStack::new(&mut buffer),
        Default::default(),
    );
    coeff
}

/// `[B₁; B₂] ← Qᵀ·[B₁; B₂]` (`transpose`) or `Q·[B₁; B₂]` for a factored
/// stack whose reflectors are `V = [I; V₂]`: the QR of an upper-triangular
/// `R` (as tall as `B₁`) on top of a tile, whose reflectors vanish below the
/// diagonal of the top block. With `T` from [`qr_factored`] that is
/// `W = B₁ + V₂ᵀ·B₂`, `W ← T⁻ᵀ·W` (or `T⁻¹·W`), `B₁ −= W`, `B₂ −= V₂·W`:
/// two products of the tile's size, half the work of treating the stack as
/// a general one and no copy of it.
pub(crate) fn ts_apply(
    factored: &Tile,
    coeff: &Tile,
    mut b1: ArrayViewMut2<'_, f64>,
    mut b2: ArrayViewMut2<'_, f64>,
    transpose: bool,
) {
    let k = b1.nrows();
    let v2 = factored.slice(s![k.., ..k]);
    let t = coeff.slice(s![..k, ..k]);
    let mut w = tile::zeros(k, b1.ncols());
    w.assign(&b1);
    let mut w_view = w.view_mut();
    faer::linalg::matmul::matmul(
        mat_mut(&mut w_view),
        Accum::Add,
        mat_ref(&v2.t()),
        mat_ref(&b2.view()),
        1.0,
        Par::Seq,
    );
    if transpose {
        solve::solve_lower_triangular_in_place(mat_ref(&t.t()), mat_mut(&mut w_view), Par::Seq);
    } else {
        solve::solve_upper_triangular_in_place(mat_ref(&t), mat_mut(&mut w_view), Par::Seq);
    }
    b1 -= &w;
    faer::linalg::matmul::matmul(
        mat_mut(&mut b2),
        Accum::Add,
        mat_ref(&v2),
        mat_ref(&w.view()),
        -1.0,
        Par::Seq,
    );
}

/// `B ← Qᵀ·B` (`transpose`) or `B ← Q·B` for the `Q` of a factored form
/// from [`qr_factored`]; `B` has as many rows as the factored matrix.
pub(crate) fn qr_apply(factored: &Tile, coeff: &Tile, b: &mut Tile, transpose: bool) {
    apply(Par::Seq, factored, coeff, b, transpose);
}

fn apply(par: Par, factored: &Tile, coeff: &Tile, b: &mut Tile, transpose: bool) {
    let (m, n) = factored.dim();
    let k = m.min(n);
    if k == 0 || b.ncols() == 0 {
        return;
    }
    let basis = factored.slice(s![.., ..k]);
    let block = coeff.nrows().max(1);
    let scratch = householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(
        m,
        block,
        b.ncols(),
    );
    let mut buffer = MemBuffer::new(scratch);
    let stack = MemStack::new(&mut buffer);
    let mut target = b.view_mut();
    let coeff = coeff.view();
    let (basis, coeff, target) = (mat_ref(&basis), mat_ref(&coeff), mat_mut(&mut target));
    let sequence = if transpose {
        householder::apply_block_householder_sequence_transpose_on_the_left_in_place_with_conj
    } else {
        householder::apply_block_householder_sequence_on_the_left_in_place_with_conj
    };
    sequence(basis, coeff, Conj::No, target, par, stack);
}

fn svd(par: Par, a: Tile, vectors: bool) -> Result<SvdParts, LinalgError> {
    let (m, n) = a.dim();
    let k = m.min(n);
    let mut s = vec![0.0; k];
    if k == 0 {
        return Ok(SvdParts {
            s,
            u: vectors.then(|| tile::zeros(m, 0)),
            vt: vectors.then(|| tile::zeros(0, n)),
        });
    }
    let job = if vectors {
        ComputeSvdVectors::Thin
    } else {
        ComputeSvdVectors::No
    };
    let mut u = vectors.then(|| tile::zeros(m, k));
    let mut v = vectors.then(|| tile::zeros(n, k));
    let scratch = faer_svd::svd_scratch::<f64>(m, n, job, job, par, Default::default());
    let mut buffer = MemBuffer::new(scratch);
    let stack = MemStack::new(&mut buffer);
    let view = a.view();
    let mut u_view = u.as_mut().map(|u| u.view_mut());
    let mut v_view = v.as_mut().map(|v| v.view_mut());
    faer_svd::svd(
        mat_ref(&view),
        ColMut::from_slice_mut(&mut s).as_diagonal_mut(),
        u_view.as_mut().map(mat_mut),
        v_view.as_mut().map(mat_mut),
        par,
        stack,
        Default::default(),
    )
    .map_err(|error| LinalgError::NoConvergence {
        operation: "svd",
        detail: format!("{error:?}"),
    })?;
    Ok(SvdParts {
        s,
        u,
        vt: v.map(|v| tile::to_column_major(v.t())),
    })
}

fn par(threads: usize) -> Par {
    if threads <= 1 {
        Par::Seq
    } else {
        Par::rayon(threads)
    }
}
