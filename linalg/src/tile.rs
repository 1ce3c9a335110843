//! Tiles are column-major `ndarray` matrices, the layout BLAS and faer expect.

use ndarray::{Array2, ArrayView2, ShapeBuilder};

/// One tile of a [`BlockMatrix`](crate::BlockMatrix).
pub type Tile = Array2<f64>;

/// A column-major tile of zeros.
pub fn zeros(rows: usize, cols: usize) -> Tile {
    Array2::zeros((rows, cols).f())
}

/// A column-major copy of any matrix view.
pub fn to_column_major(view: ArrayView2<'_, f64>) -> Tile {
    let mut tile = zeros(view.nrows(), view.ncols());
    tile.assign(&view);
    tile
}

/// Whether every value is finite, in a form the compiler vectorises: `x − x`
/// is NaN exactly when `x` is NaN or infinite, and NaN survives any sum.
pub fn all_finite(values: &[f64]) -> bool {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v - v;
        }
    }
    lanes.iter().chain(rest).fold(0.0, |acc, &v| acc + (v - v)) == 0.0
        && lanes.iter().all(|lane| *lane == 0.0)
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
