use serde::{Deserialize, Serialize};

use crate::LinalgError;

/// How a matrix is cut into tiles: its shape and its tile shape. Edge tiles are
/// ragged when the tile size does not divide the matrix size.
///
/// A tile larger than the matrix is clamped to the matrix, so one layout has
/// exactly one description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TileLayout {
    rows: usize,
    cols: usize,
    tile_rows: usize,
    tile_cols: usize,
}

impl TileLayout {
    /// A layout of a `rows × cols` matrix in `tile_rows × tile_cols` tiles.
    pub fn new(
        rows: usize,
        cols: usize,
        tile_rows: usize,
        tile_cols: usize,
    ) -> Result<Self, LinalgError> {
        for (what, value) in [
            ("rows", rows),
            ("columns", cols),
            ("tile rows", tile_rows),
            ("tile columns", tile_cols),
        ] {
            if value == 0 {
                return Err(LinalgError::ZeroSize { what });
            }
        }
        Ok(Self {
            rows,
            cols,
            tile_rows: tile_rows.min(rows),
            tile_cols: tile_cols.min(cols),
        })
    }

    /// The layout of the transposed matrix (always valid when this one is).
    pub fn transposed(&self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            tile_rows: self.tile_cols,
            tile_cols: self.tile_rows,
        }
    }

    /// A layout in square `tile × tile` tiles.
    pub fn square_tiles(rows: usize, cols: usize, tile: usize) -> Result<Self, LinalgError> {
        Self::new(rows, cols, tile, tile)
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)` of the matrix.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Rows of a full tile.
    pub fn tile_rows(&self) -> usize {
        self.tile_rows
    }

    /// Columns of a full tile.
    pub fn tile_cols(&self) -> usize {
        self.tile_cols
    }

    /// Number of tile rows and tile columns.
    pub fn grid(&self) -> (usize, usize) {
        (
            self.rows.div_ceil(self.tile_rows),
            self.cols.div_ceil(self.tile_cols),
        )
    }

    /// Number of tiles.
    pub fn num_tiles(&self) -> usize {
        let (r, c) = self.grid();
        r * c
    }

    /// Rows of the tiles in tile row `i`.
    pub fn rows_of(&self, i: usize) -> usize {
        self.tile_rows.min(self.rows - i * self.tile_rows)
    }

    /// Columns of the tiles in tile column `j`.
    pub fn cols_of(&self, j: usize) -> usize {
        self.tile_cols.min(self.cols - j * self.tile_cols)
    }

    /// Shape of tile `(i, j)`.
    pub fn tile_shape(&self, i: usize, j: usize) -> (usize, usize) {
        (self.rows_of(i), self.cols_of(j))
    }

    /// First row of tile row `i` in the whole matrix.
    pub fn row_offset(&self, i: usize) -> usize {
        i * self.tile_rows
    }

    /// First column of tile column `j` in the whole matrix.
    pub fn col_offset(&self, j: usize) -> usize {
        j * self.tile_cols
    }

    /// Position of tile `(i, j)` in row-major tile order.
    pub fn tile_index(&self, i: usize, j: usize) -> usize {
        i * self.grid().1 + j
    }

    /// Bytes of tile `(i, j)` as `f64` values.
    pub fn tile_bytes(&self, i: usize, j: usize) -> u64 {
        let (r, c) = self.tile_shape(i, j);
        (r * c * std::mem::size_of::<f64>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_edges() {
        let l = TileLayout::new(10, 7, 4, 3).unwrap();
        assert_eq!(l.grid(), (3, 3));
        assert_eq!(l.tile_shape(2, 2), (2, 1));
        assert_eq!(l.tile_shape(0, 0), (4, 3));
        assert_eq!(l.row_offset(2), 8);
        assert_eq!(l.tile_bytes(2, 2), 16);
    }

    #[test]
    fn a_tile_larger_than_the_matrix_is_one_tile() {
        let l = TileLayout::square_tiles(5, 3, 100).unwrap();
        assert_eq!(l.grid(), (1, 1));
        assert_eq!(l.tile_shape(0, 0), (5, 3));
    }

    #[test]
    fn transposing_swaps_shape_and_tiles() {
        let l = TileLayout::new(70, 30, 16, 64).unwrap();
        assert_eq!(l.transposed(), TileLayout::new(30, 70, 30, 16).unwrap());
        assert_eq!(l.transposed().transposed(), l);
    }

    #[test]
    fn zero_sizes_are_errors() {
        assert!(matches!(
            TileLayout::new(0, 3, 1, 1),
            Err(LinalgError::ZeroSize { what: "rows" })
        ));
        assert!(matches!(
            TileLayout::square_tiles(3, 3, 0),
            Err(LinalgError::ZeroSize { what: "tile rows" })
        ));
    }
}
