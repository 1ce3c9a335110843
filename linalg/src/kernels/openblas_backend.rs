use std::os::raw::c_int;
use std::sync::Mutex;

use cblas_sys::{
    CBLAS_DIAG, CBLAS_LAYOUT, CBLAS_SIDE, CBLAS_TRANSPOSE, CBLAS_UPLO, cblas_dgemm, cblas_dsyrk,
    cblas_dtrsm,
};
use lax::Lapack;
use lax::layout::MatrixLayout;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use super::sealed::Raw;
use super::{BackendKind, Diagonal, Side, SvdParts, Transpose, Triangle};
use crate::LinalgError;
use crate::error::shape_mismatch;
use crate::tile::{self, Tile};

unsafe extern "C" {
    fn openblas_set_num_threads(threads: c_int);
    fn openblas_get_corename() -> *const std::os::raw::c_char;
}

/// The CPU core type OpenBLAS selected when it was loaded.
pub fn core_name() -> String {
    // SAFETY: OpenBLAS returns a pointer to a static NUL-terminated string.
    let name = unsafe { openblas_get_corename() };
    if name.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated, static.
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// A core type to force with `OPENBLAS_CORETYPE` when OpenBLAS did not
/// recognise this CPU and fell back to a generic pre-AVX kernel set (common on
/// virtual machines that report a generic model name), which runs DGEMM at a
/// fraction of the CPU's speed. `None` when OpenBLAS's own choice is fine.
pub fn better_core_type() -> Option<&'static str> {
    const GENERIC: [&str; 8] = [
        "Prescott",
        "Core2",
        "Penryn",
        "Dunnington",
        "Nehalem",
        "Atom",
        "Katmai",
        "Northwood",
    ];
    let current = core_name();
    if !GENERIC.iter().any(|g| current.eq_ignore_ascii_case(g)) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Some("SkylakeX");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some("Haswell");
        }
    }
    None
}

/// OpenBLAS's thread count is process-wide: tile kernels need it at one, the
/// whole-matrix references at `threads`. References take this lock so that two
/// of them never fight over the setting; callers do not run tile kernels while
/// a reference runs.
static THREADS: Mutex<()> = Mutex::new(());

fn set_threads(threads: usize) {
    // SAFETY: a plain setter in OpenBLAS, safe to call at any time.
    unsafe { openblas_set_num_threads(threads.max(1) as c_int) }
}

/// Kernels from OpenBLAS (CBLAS level 3 and LAPACK `dpotrf`), called in place
/// on column-major tiles with one BLAS thread per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenBlasBackend;

impl OpenBlasBackend {
    fn single_threaded(&self) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| set_threads(1));
    }

    /// Runs a call with `threads` BLAS threads, then goes back to one.
    fn on_threads<T>(&self, threads: usize, call: impl FnOnce() -> T) -> T {
        self.single_threaded();
        if threads <= 1 {
            return call();
        }
        let _guard = THREADS.lock().unwrap_or_else(|p| p.into_inner());
        set_threads(threads);
        let result = call();
        set_threads(1);
        result
    }
}

fn dim(value: usize, operation: &'static str) -> Result<c_int, LinalgError> {
    c_int::try_from(value).map_err(|_| {
        shape_mismatch(
            operation,
            format!("dimension {value} exceeds the BLAS integer range"),
        )
    })
}

/// A read operand as BLAS sees it: column-major data, possibly the transpose
/// of the view (a row-major view is a column-major view of its transpose).
struct Operand {
    ptr: *const f64,
    ld: c_int,
    transposed: bool,
    // Keeps a column-major copy alive when the view's strides do not fit BLAS.
    _copy: Option<Array2<f64>>,
}

fn column_major_ld(rows: usize, cols: usize, rs: isize, cs: isize) -> Option<usize> {
    let ld = rows.max(1);
    if (rows <= 1 || rs == 1) && cols <= 1 {
        return Some(ld);
    }
    (rows <= 1 || rs == 1).then_some(())?;
    usize::try_from(cs).ok().filter(|&cs| cs >= ld)
}

fn operand(view: &ArrayView2<'_, f64>, operation: &'static str) -> Result<Operand, LinalgError> {
    let (rows, cols) = view.dim();
    let (rs, cs) = (view.strides()[0], view.strides()[1]);
    if let Some(ld) = column_major_ld(rows, cols, rs, cs) {
        return Ok(Operand {
            ptr: view.as_ptr(),
            ld: dim(ld, operation)?,
            transposed: false,
            _copy: None,
        });
    }
    if let Some(ld) = column_major_ld(cols, rows, cs, rs) {
        return Ok(Operand {
            ptr: view.as_ptr(),
            ld: dim(ld, operation)?,
            transposed: true,
            _copy: None,
        });
    }
    let copy = tile::to_column_major(view.view());
    Ok(Operand {
        ptr: copy.as_ptr(),
        ld: dim(rows.max(1), operation)?,
        transposed: false,
        _copy: Some(copy),
    })
}

fn cblas_trans(trans: Transpose, flipped: bool) -> CBLAS_TRANSPOSE {
    match (trans == Transpose::Yes) != flipped {
        true => CBLAS_TRANSPOSE::CblasTrans,
        false => CBLAS_TRANSPOSE::CblasNoTrans,
    }
}

/// Runs `f` on a column-major version of `out` (the view itself when its
/// strides allow, else a copy that is written back), with its leading dimension.
fn with_column_major(
    out: &mut ArrayViewMut2<'_, f64>,
    operation: &'static str,
    f: impl FnOnce(*mut f64, c_int),
) -> Result<(), LinalgError> {
    let (rows, cols) = out.dim();
    let (rs, cs) = (out.strides()[0], out.strides()[1]);
    if let Some(ld) = column_major_ld(rows, cols, rs, cs) {
        f(out.as_mut_ptr(), dim(ld, operation)?);
    } else {
        let mut copy = tile::to_column_major(out.view());
        f(copy.as_mut_ptr(), dim(rows.max(1), operation)?);
        out.assign(&copy);
    }
    Ok(())
}

fn uplo(triangle: Triangle) -> CBLAS_UPLO {
    match triangle {
        Triangle::Lower => CBLAS_UPLO::CblasLower,
        Triangle::Upper => CBLAS_UPLO::CblasUpper,
    }
}

fn dgemm(
    trans_a: Transpose,
    trans_b: Transpose,
    alpha: f64,
    a: &ArrayView2<'_, f64>,
    b: &ArrayView2<'_, f64>,
    beta: f64,
    c: &mut ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let (m, n) = c.dim();
    let k = if trans_a == Transpose::No {
        a.ncols()
    } else {
        a.nrows()
    };
    let (m, n, k) = (dim(m, "gemm")?, dim(n, "gemm")?, dim(k, "gemm")?);
    let (oa, ob) = (operand(a, "gemm")?, operand(b, "gemm")?);
    with_column_major(c, "gemm", |c_ptr, ldc| {
        // SAFETY: shapes were checked; pointers and leading dimensions describe
        // live column-major buffers of the checked sizes.
        unsafe {
            cblas_dgemm(
                CBLAS_LAYOUT::CblasColMajor,
                cblas_trans(trans_a, oa.transposed),
                cblas_trans(trans_b, ob.transposed),
                m,
                n,
                k,
                alpha,
                oa.ptr,
                oa.ld,
                ob.ptr,
                ob.ld,
                beta,
                c_ptr,
                ldc,
            )
        }
    })
}

/// `dpotrf` on a column-major copy or in place; `info > 0` names the pivot.
fn dpotrf(a: &mut ArrayViewMut2<'_, f64>) -> Result<(), LinalgError> {
    let n = a.nrows();
    let n_int = dim(n.max(1), "potrf")?;
    let mut result = Ok(());
    let contiguous = a.strides()[0] == 1 && (n <= 1 || a.strides()[1] == n as isize);
    let mut run = |slice: &mut [f64]| {
        result = f64::cholesky(
            MatrixLayout::F {
                col: n_int,
                lda: n_int,
            },
            lax::UPLO::Lower,
            slice,
        );
    };
    if contiguous {
        // SAFETY: the view is column-major and contiguous, so its n×n elements
        // form one slice starting at its first element.
        let slice = unsafe { std::slice::from_raw_parts_mut(a.as_mut_ptr(), n * n) };
        run(slice);
    } else {
        let mut copy = tile::to_column_major(a.view());
        if let Some(slice) = copy.as_slice_memory_order_mut() {
            run(slice);
        }
        a.assign(&copy);
    }
    match result {
        Ok(()) => Ok(()),
        Err(lax::error::Error::LapackComputationalFailure { return_code }) => {
            let pivot = (return_code - 1).max(0) as usize;
            Err(LinalgError::NotPositiveDefinite {
                tile: 0,
                pivot,
                row: pivot,
            })
        }
        Err(other) => Err(shape_mismatch(
            "potrf",
            format!("LAPACK rejected the call: {other}"),
        )),
    }
}

fn lapack_failure(operation: &'static str, error: lax::error::Error) -> LinalgError {
    match error {
        lax::error::Error::LapackComputationalFailure { return_code } if operation == "svd" => {
            LinalgError::NoConvergence {
                operation,
                detail: format!("LAPACK dgesdd returned {return_code}"),
            }
        }
        other => shape_mismatch(operation, format!("LAPACK rejected the call: {other}")),
    }
}

/// The layout LAPACK sees for a column-major contiguous `m×n` tile.
fn lapack_layout(a: &Tile, operation: &'static str) -> Result<MatrixLayout, LinalgError> {
    Ok(MatrixLayout::F {
        col: dim(a.ncols(), operation)?,
        lda: dim(a.nrows().max(1), operation)?,
    })
}

/// `dgeqrf`, then the upper triangle copied out as `R` and, when asked,
/// `dorgqr` over the reflectors for the explicit `Q`.
fn dgeqrf(mut a: Tile, explicit_q: bool) -> Result<(Tile, Option<Tile>), LinalgError> {
    let (m, n) = a.dim();
    let k = m.min(n);
    if k == 0 {
        return Ok((tile::zeros(k, n), explicit_q.then(|| tile::zeros(m, k))));
    }
    let layout = lapack_layout(&a, "qr")?;
    let tau = f64::householder(layout, slice_of(&mut a)?).map_err(|e| lapack_failure("qr", e))?;
    let r = tile::upper_rows(a.view(), k);
    if !explicit_q {
        return Ok((r, None));
    }
    f64::q(layout, slice_of(&mut a)?, &tau).map_err(|e| lapack_failure("qr", e))?;
    let q = if k == n {
        a
    } else {
        tile::to_column_major(a.slice(ndarray::s![.., ..k]))
    };
    Ok((r, Some(q)))
}

fn slice_of(a: &mut Tile) -> Result<&mut [f64], LinalgError> {
    a.as_slice_memory_order_mut()
        .ok_or_else(|| shape_mismatch("qr", "the tile is not contiguous".into()))
}

/// `dgesdd`, thin vectors or none.
fn dgesdd(mut a: Tile, vectors: bool) -> Result<SvdParts, LinalgError> {
    use ndarray::ShapeBuilder;
    let (m, n) = a.dim();
    let k = m.min(n);
    if k == 0 {
        return Ok(SvdParts {
            s: Vec::new(),
            u: vectors.then(|| tile::zeros(m, 0)),
            vt: vectors.then(|| tile::zeros(0, n)),
        });
    }
    let layout = lapack_layout(&a, "svd")?;
    let job = if vectors {
        lax::JobSvd::Some
    } else {
        lax::JobSvd::None
    };
    let out = f64::svddc(layout, job, slice_of(&mut a)?).map_err(|e| lapack_failure("svd", e))?;
    let shaped = |values: Option<Vec<f64>>, shape: (usize, usize)| {
        values.and_then(|v| Array2::from_shape_vec(shape.f(), v).ok())
    };
    Ok(SvdParts {
        s: out.s,
        u: if vectors { shaped(out.u, (m, k)) } else { None },
        vt: if vectors {
            shaped(out.vt, (k, n))
        } else {
            None
        },
    })
}

#[allow(clippy::too_many_arguments)]
fn trsm(
    side: Side,
    triangle: Triangle,
    trans: Transpose,
    diagonal: Diagonal,
    alpha: f64,
    a: &ArrayView2<'_, f64>,
    b: &mut ArrayViewMut2<'_, f64>,
) -> Result<(), LinalgError> {
    let (m, n) = (dim(b.nrows(), "trsm")?, dim(b.ncols(), "trsm")?);
    let oa = operand(a, "trsm")?;
    // A row-major A is a column-major Aᵀ: its other triangle, transposed.
    let stored_triangle = match (triangle, oa.transposed) {
        (t, false) => t,
        (Triangle::Lower, true) => Triangle::Upper,
        (Triangle::Upper, true) => Triangle::Lower,
    };
    with_column_major(b, "trsm", |b_ptr, ldb| {
        // SAFETY: as in dgemm.
        unsafe {
            cblas_dtrsm(
                CBLAS_LAYOUT::CblasColMajor,
                match side {
                    Side::Left => CBLAS_SIDE::CblasLeft,
                    Side::Right => CBLAS_SIDE::CblasRight,
                },
                uplo(stored_triangle),
                cblas_trans(trans, oa.transposed),
                match diagonal {
                    Diagonal::NonUnit => CBLAS_DIAG::CblasNonUnit,
                    Diagonal::Unit => CBLAS_DIAG::CblasUnit,
                },
                m,
                n,
                alpha,
                oa.ptr,
                oa.ld,
                b_ptr,
                ldb,
            )
        }
    })
}

impl Raw for OpenBlasBackend {
    fn raw_kind(&self) -> BackendKind {
        BackendKind::OpenBlas
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
        self.on_threads(threads, || dgemm(trans_a, trans_b, alpha, a, b, beta, c))
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
        self.single_threaded();
        let n = dim(c.nrows(), "syrk")?;
        let k = dim(
            if trans == Transpose::No {
                a.ncols()
            } else {
                a.nrows()
            },
            "syrk",
        )?;
        let oa = operand(a, "syrk")?;
        with_column_major(c, "syrk", |c_ptr, ldc| {
            // SAFETY: as in dgemm.
            unsafe {
                cblas_dsyrk(
                    CBLAS_LAYOUT::CblasColMajor,
                    uplo(triangle),
                    cblas_trans(trans, oa.transposed),
                    n,
                    k,
                    alpha,
                    oa.ptr,
                    oa.ld,
                    beta,
                    c_ptr,
                    ldc,
                )
            }
        })
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
        self.on_threads(threads, || {
            trsm(side, triangle, trans, diagonal, alpha, a, b)
        })
    }

    fn raw_cholesky(
        &self,
        threads: usize,
        a: &mut ArrayViewMut2<'_, f64>,
    ) -> Result<(), LinalgError> {
        self.on_threads(threads, || dpotrf(a))
    }

    fn raw_qr(
        &self,
        threads: usize,
        a: Tile,
        explicit_q: bool,
    ) -> Result<(Tile, Option<Tile>), LinalgError> {
        self.on_threads(threads, || dgeqrf(a, explicit_q))
    }

    fn raw_svd(&self, threads: usize, a: Tile, vectors: bool) -> Result<SvdParts, LinalgError> {
        self.on_threads(threads, || dgesdd(a, vectors))
    }
}
