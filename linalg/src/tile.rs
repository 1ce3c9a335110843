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

/// The first non-finite value of a view, as `(row, col, value)`.
pub fn first_non_finite(view: ArrayView2<'_, f64>) -> Option<(usize, usize, f64)> {
    view.indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|((r, c), &v)| (r, c, v))
}

/// Frobenius norm of a view.
pub fn frobenius_norm(view: ArrayView2<'_, f64>) -> f64 {
    view.iter().map(|v| v * v).sum::<f64>().sqrt()
}
