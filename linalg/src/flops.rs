//! Floating-point operation counts, the one place their formulas live: task
//! costs in the graph (its critical-path priorities), the GFLOP/s that the
//! command line and the benchmarks report, and the ceiling tool all read them.
//! Counts are the usual LAPACK ones (multiplications and additions).

/// `C ← A·B` for an `m×k` by `k×n` product.
pub fn gemm(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

/// `C ← A·Aᵀ` of an `n×k` `A`, one triangle of `C`.
pub fn syrk(n: usize, k: usize) -> f64 {
    n as f64 * (n as f64 + 1.0) * k as f64
}

/// A triangular solve of order `order` against `other` right-hand sides
/// (or rows, on the right).
pub fn trsm(order: usize, other: usize) -> f64 {
    let order = order as f64;
    order * order * other as f64
}

/// The Cholesky factorization of an `n×n` matrix.
pub fn cholesky(n: usize) -> f64 {
    (n as f64).powi(3) / 3.0
}

/// The Householder QR of an `m×n` matrix (`R`, and the reflectors):
/// `2mn² − 2n³/3` for `m ≥ n`, and the same with `m` and `n` exchanged.
pub fn qr(m: usize, n: usize) -> f64 {
    let (long, k) = (m.max(n) as f64, m.min(n) as f64);
    2.0 * long * k * k - 2.0 * k.powi(3) / 3.0
}

/// The SVD of an `m×n` matrix: its reduction to bidiagonal form and, with
/// `vectors`, their accumulation (counted as twice the reduction again).
pub fn svd(m: usize, n: usize, vectors: bool) -> f64 {
    let (big, small) = (m.max(n) as f64, m.min(n) as f64);
    let reduce = 4.0 * big * small * small - 4.0 * small.powi(3) / 3.0;
    reduce * if vectors { 3.0 } else { 1.0 }
}

/// The SVD of an `n×n` upper band matrix of bandwidth `band`: bulge chasing
/// to bidiagonal form; with `vectors`, a dense SVD of the band instead.
pub fn band_svd(n: usize, band: usize, vectors: bool) -> f64 {
    let (n, b) = (n as f64, band as f64);
    if vectors {
        n.powi(3) * (4.0 - 4.0 / 3.0) * 3.0
    } else {
        12.0 * n * n * b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_textbook_forms() {
        assert_eq!(gemm(2, 3, 4), 48.0);
        assert_eq!(cholesky(3), 9.0);
        // Square QR: 4n³/3.
        assert!((qr(300, 300) - 4.0 * 300f64.powi(3) / 3.0).abs() < 1e-6);
        // Tall QR: 2mn² − 2n³/3.
        assert!((qr(1000, 10) - (2.0 * 1000.0 * 100.0 - 2000.0 / 3.0)).abs() < 1e-6);
        assert_eq!(qr(10, 1000), qr(1000, 10));
        assert_eq!(svd(5, 7, true), 3.0 * svd(7, 5, false));
        assert_eq!(trsm(3, 2), 18.0);
        assert_eq!(syrk(2, 5), 30.0);
    }
}
