//! Tiles are column-major `ndarray` matrices, the layout BLAS and faer expect.

use ndarray::{Array2, ArrayView2, ShapeBuilder};

/// One tile of a [`BlockMatrix`](crate::BlockMatrix).
pub type Tile = Array2<f64>;

/// A column-major tile of zeros.
pub fn zeros(rows: usize, cols: usize) -> Tile {
    Array2::zeros((rows, cols).f())
}

/// A column-major copy of any matrix view (written once, not zeroed first).
pub fn to_column_major(view: ArrayView2<'_, f64>) -> Tile {
    let mut tile = Array2::uninit((view.nrows(), view.ncols()).f());
    view.assign_to(&mut tile);
    // SAFETY: `assign_to` wrote every element.
    unsafe { tile.assume_init() }
}

/// The tile itself when nobody else holds it (no copy), else a copy.
pub fn unshared(tile: std::sync::Arc<Tile>) -> Tile {
    std::sync::Arc::try_unwrap(tile).unwrap_or_else(|shared| to_column_major(shared.view()))
}

/// The upper triangle of the first `k` rows of `a` (zeros below the
/// diagonal): the `R` a Householder QR leaves in place.
pub fn upper_rows(a: ArrayView2<'_, f64>, k: usize) -> Tile {
    let mut r = zeros(k, a.ncols());
    for j in 0..a.ncols() {
        for i in 0..k.min(j + 1) {
            r[[i, j]] = a[[i, j]];
        }
    }
    r
}

/// Whether every value is finite, in a form the compiler vectorises: `x·0` is
/// zero for finite `x` and NaN for NaN or ±∞, and NaN survives any sum.
pub fn all_finite(values: &[f64]) -> bool {
    let mut lanes = [0.0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v * 0.0;
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|&v| v * 0.0).sum();
    lanes.iter().sum::<f64>() + rest == 0.0
}

/// Fails with [`NonFinite`](crate::LinalgError::NonFinite) naming `matrix`
/// and the position of the view's first NaN or infinity, where the view
/// starts at `(row, col)` of that matrix.
pub fn check_finite(
    matrix: &'static str,
    view: ArrayView2<'_, f64>,
    (row, col): (usize, usize),
) -> Result<(), crate::LinalgError> {
    match first_non_finite(view) {
        Some((r, c, value)) => Err(crate::LinalgError::NonFinite {
            matrix,
            row: row + r,
            col: col + c,
            value,
        }),
        None => Ok(()),
    }
}

/// The first non-finite value of a view, as `(row, col, value)`.
pub fn first_non_finite(view: ArrayView2<'_, f64>) -> Option<(usize, usize, f64)> {
    let finite = match view.as_slice_memory_order() {
        Some(values) => all_finite(values),
        None => view.iter().all(|v| v.is_finite()),
    };
    if finite {
        return None;
    }
    view.indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|((r, c), &v)| (r, c, v))
}

/// Frobenius norm of a view.
pub fn frobenius_norm(view: ArrayView2<'_, f64>) -> f64 {
    view.iter().map(|v| v * v).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::all_finite;

    #[test]
    fn all_finite_finds_nan_and_infinities_anywhere() {
        let mut values = vec![1.5; 37];
        assert!(all_finite(&values));
        assert!(all_finite(&[]));
        for position in [0, 7, 8, 35, 36] {
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                values[position] = bad;
                assert!(!all_finite(&values), "{bad} at {position}");
                values[position] = 1.5;
            }
        }
        assert!(all_finite(&[f64::MAX, f64::MIN, -0.0, f64::MIN_POSITIVE]));
    }
}
