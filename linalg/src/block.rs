use std::path::Path;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2, s};

use crate::rng::TileRng;
use crate::tile::{self, Tile};
use crate::{LinalgError, TileLayout};

/// A matrix held as a grid of tiles.
///
/// Tiles are shared (`Arc`), so handing a tile to a task never copies it.
/// Structurally zero tiles (the upper triangle of a Cholesky factor) share one
/// allocation per shape.
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    layout: TileLayout,
    tiles: Vec<Arc<Tile>>,
}

impl BlockMatrix {
    /// A matrix from its tiles in row-major tile order; each tile must have the
    /// shape the layout gives it.
    pub fn from_tiles(layout: TileLayout, tiles: Vec<Arc<Tile>>) -> Result<Self, LinalgError> {
        if tiles.len() != layout.num_tiles() {
            return Err(crate::error::shape_mismatch(
                "BlockMatrix::from_tiles",
                format!(
                    "the layout has {} tiles but {} were given",
                    layout.num_tiles(),
                    tiles.len()
                ),
            ));
        }
        let (_, grid_cols) = layout.grid();
        for (index, tile) in tiles.iter().enumerate() {
            let (i, j) = (index / grid_cols, index % grid_cols);
            if tile.dim() != layout.tile_shape(i, j) {
                return Err(crate::error::shape_mismatch(
                    "BlockMatrix::from_tiles",
                    format!(
                        "tile ({i}, {j}) is {:?} but the layout needs {:?}",
                        tile.dim(),
                        layout.tile_shape(i, j)
                    ),
                ));
            }
        }
        Ok(Self { layout, tiles })
    }

    /// Builds each tile from a function of its coordinates and shape.
    pub fn from_fn(
        layout: TileLayout,
        mut make: impl FnMut(usize, usize, (usize, usize)) -> Tile,
    ) -> Self {
        let (grid_rows, grid_cols) = layout.grid();
        let mut tiles = Vec::with_capacity(layout.num_tiles());
        for i in 0..grid_rows {
            for j in 0..grid_cols {
                tiles.push(Arc::new(make(i, j, layout.tile_shape(i, j))));
            }
        }
        Self { layout, tiles }
    }

    /// Cuts a whole matrix into `tile_rows × tile_cols` tiles.
    pub fn from_array(
        array: ArrayView2<'_, f64>,
        tile_rows: usize,
        tile_cols: usize,
    ) -> Result<Self, LinalgError> {
        let layout = TileLayout::new(array.nrows(), array.ncols(), tile_rows, tile_cols)?;
        Ok(Self::from_fn(layout, |i, j, (r, c)| {
            let (r0, c0) = (layout.row_offset(i), layout.col_offset(j));
            tile::to_column_major(array.slice(s![r0..r0 + r, c0..c0 + c]))
        }))
    }

    /// The whole matrix, column-major.
    pub fn to_array(&self) -> Array2<f64> {
        let mut whole = tile::zeros(self.layout.rows(), self.layout.cols());
        let (grid_rows, grid_cols) = self.layout.grid();
        for i in 0..grid_rows {
            for j in 0..grid_cols {
                let (r0, c0) = (self.layout.row_offset(i), self.layout.col_offset(j));
                let (r, c) = self.layout.tile_shape(i, j);
                whole
                    .slice_mut(s![r0..r0 + r, c0..c0 + c])
                    .assign(self.tile(i, j));
            }
        }
        whole
    }

    /// A matrix with entries drawn uniformly from [-1, 1), tile by tile: the same
    /// `seed` gives the same matrix whatever the tile size.
    pub fn random(
        rows: usize,
        cols: usize,
        tile_rows: usize,
        tile_cols: usize,
        seed: u64,
    ) -> Result<Self, LinalgError> {
        let layout = TileLayout::new(rows, cols, tile_rows, tile_cols)?;
        Ok(Self::from_fn(layout, |i, j, (r, c)| {
            random_block(seed, layout.row_offset(i), layout.col_offset(j), r, c)
        }))
    }

    /// A random symmetric positive-definite `n × n` matrix: symmetric entries
    /// uniform in [-1, 1) plus `n` on the diagonal, which makes it strictly
    /// diagonally dominant and so positive definite. Built tile by tile; the
    /// same `seed` gives the same matrix whatever the tile size.
    pub fn random_spd(n: usize, tile: usize, seed: u64) -> Result<Self, LinalgError> {
        let layout = TileLayout::square_tiles(n, n, tile)?;
        Ok(Self::from_fn(layout, |i, j, (r, c)| {
            let (r0, c0) = (layout.row_offset(i), layout.col_offset(j));
            let mut block = tile::zeros(r, c);
            for col in 0..c {
                for row in 0..r {
                    let (gr, gc) = (r0 + row, c0 + col);
                    // Entry (gr, gc) is drawn from the stream of its lower-triangle mirror.
                    let (lo, hi) = if gr >= gc { (gr, gc) } else { (gc, gr) };
                    block[[row, col]] =
                        symmetric_entry(seed, lo, hi) + if gr == gc { n as f64 } else { 0.0 };
                }
            }
            block
        }))
    }

    /// The layout.
    pub fn layout(&self) -> TileLayout {
        self.layout
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        self.layout.shape()
    }

    /// Tile `(i, j)`.
    pub fn tile(&self, i: usize, j: usize) -> &Arc<Tile> {
        &self.tiles[self.layout.tile_index(i, j)]
    }

    /// All tiles in row-major tile order.
    pub fn tiles(&self) -> &[Arc<Tile>] {
        &self.tiles
    }

    /// Fails with [`LinalgError::NonFinite`] naming the first NaN or infinity.
    pub fn check_finite(&self, matrix: &'static str) -> Result<(), LinalgError> {
        let (grid_rows, grid_cols) = self.layout.grid();
        for i in 0..grid_rows {
            for j in 0..grid_cols {
                let start = (self.layout.row_offset(i), self.layout.col_offset(j));
                tile::check_finite(matrix, self.tile(i, j).view(), start)?;
            }
        }
        Ok(())
    }

    /// Like [`check_finite`](Self::check_finite) on the lower triangle only
    /// (diagonal included): the part that a lower Cholesky factorization reads.
    pub fn check_finite_lower(&self, matrix: &'static str) -> Result<(), LinalgError> {
        self.check_finite_triangle(matrix, crate::Triangle::Lower)
    }

    /// Like [`check_finite`](Self::check_finite) on one triangle only
    /// (diagonal included): the part that a triangular solve reads.
    pub fn check_finite_triangle(
        &self,
        matrix: &'static str,
        triangle: crate::Triangle,
    ) -> Result<(), LinalgError> {
        let lower = triangle == crate::Triangle::Lower;
        let (grid_rows, grid_cols) = self.layout.grid();
        for i in 0..grid_rows {
            for j in 0..grid_cols {
                let tile = self.tile(i, j);
                let (r0, c0) = (self.layout.row_offset(i), self.layout.col_offset(j));
                // Rows of column c (local) that lie in the triangle.
                let rows = |c: usize| {
                    let diagonal = (c0 + c).saturating_sub(r0);
                    if lower {
                        diagonal.min(tile.nrows())..tile.nrows()
                    } else {
                        0..(c0 + c + 1).saturating_sub(r0).min(tile.nrows())
                    }
                };
                for c in 0..tile.ncols() {
                    let range = rows(c);
                    let start = (r0 + range.start, c0 + c);
                    tile::check_finite(matrix, tile.slice(s![range, c..=c]), start)?;
                }
            }
        }
        Ok(())
    }

    /// Frobenius norm.
    pub fn frobenius_norm(&self) -> f64 {
        self.tiles
            .iter()
            .map(|t| tile::frobenius_norm(t.view()).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// Fails with [`LinalgError::NotSymmetric`] naming the first entry whose
    /// mirror across the diagonal differs from it by more than `tolerance`
    /// times `√(|aᵢᵢ|·|aⱼⱼ|)` (which bounds `|aᵢⱼ|` for a positive-definite
    /// matrix), so rounding in how the matrix was formed is not an error.
    pub fn check_symmetric(&self, matrix: &'static str, tolerance: f64) -> Result<(), LinalgError> {
        let (rows, cols) = self.shape();
        if rows != cols {
            return Err(crate::error::shape_mismatch(
                "symmetry check",
                format!("{matrix} is {rows}×{cols}, not square"),
            ));
        }
        // The mirror of a tile is a tile only in square tiles.
        if self.layout.tile_rows() != self.layout.tile_cols() {
            let tile = self.layout.tile_rows();
            return self.retiled(tile, tile)?.check_symmetric(matrix, tolerance);
        }
        let diagonal: Vec<f64> = (0..rows).map(|i| self.get(i, i).abs()).collect();
        let (grid_rows, _) = self.layout.grid();
        for i in 0..grid_rows {
            for j in 0..=i {
                let (lower, upper) = (self.tile(i, j), self.tile(j, i));
                let (r0, c0) = (self.layout.row_offset(i), self.layout.col_offset(j));
                for ((r, c), &value) in lower.indexed_iter() {
                    let (row, col) = (r0 + r, c0 + c);
                    if col >= row {
                        continue;
                    }
                    let mirror = upper[[c, r]];
                    let scale = (diagonal[row] * diagonal[col]).sqrt();
                    if (value - mirror).abs() > tolerance * scale
                        || value.is_nan() != mirror.is_nan()
                    {
                        return Err(LinalgError::NotSymmetric {
                            matrix,
                            row,
                            col,
                            value,
                            mirror,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The same matrix in `tile_rows × tile_cols` tiles: shares the tiles
    /// when the tiling is already that, else copies block by block (never
    /// the whole matrix at once).
    pub fn retiled(&self, tile_rows: usize, tile_cols: usize) -> Result<Self, LinalgError> {
        let (rows, cols) = self.shape();
        let layout = TileLayout::new(rows, cols, tile_rows, tile_cols)?;
        if layout == self.layout {
            return Ok(self.clone());
        }
        let old = self.layout;
        Ok(Self::from_fn(layout, |i, j, (r, c)| {
            let (r0, c0) = (layout.row_offset(i), layout.col_offset(j));
            let mut block = tile::zeros(r, c);
            // The old tiles this one overlaps, and the overlap of each.
            for oi in r0 / old.tile_rows()..=(r0 + r - 1) / old.tile_rows() {
                let (or0, orows) = (old.row_offset(oi), old.tile_shape(oi, 0).0);
                let (top, bottom) = (r0.max(or0), (r0 + r).min(or0 + orows));
                for oj in c0 / old.tile_cols()..=(c0 + c - 1) / old.tile_cols() {
                    let (oc0, ocols) = (old.col_offset(oj), old.tile_shape(0, oj).1);
                    let (left, right) = (c0.max(oc0), (c0 + c).min(oc0 + ocols));
                    block
                        .slice_mut(s![top - r0..bottom - r0, left - c0..right - c0])
                        .assign(
                            &self
                                .tile(oi, oj)
                                .slice(s![top - or0..bottom - or0, left - oc0..right - oc0]),
                        );
                }
            }
            block
        }))
    }

    /// Entry `(row, col)`.
    pub fn get(&self, row: usize, col: usize) -> f64 {
        let (i, j) = (row / self.layout.tile_rows(), col / self.layout.tile_cols());
        let (r0, c0) = (self.layout.row_offset(i), self.layout.col_offset(j));
        self.tile(i, j)[[row - r0, col - c0]]
    }

    /// Writes the matrix as a C-order `.npy` file that numpy reads with
    /// `np.load`, one tile row at a time; an existing file is replaced once
    /// the new one is complete (see [`crate::npy::write_matrix`]).
    pub fn write_npy(&self, path: impl AsRef<Path>) -> Result<(), LinalgError> {
        crate::npy::write_matrix(path, self, crate::npy::Overwrite::Replace)
    }

    /// Reads a 2-D `float64` (or `float32`, converted) `.npy` file, C or
    /// Fortran order, into tiles through a memory map: the matrix is held
    /// once, as tiles (see [`crate::npy::NpyMatrix`]).
    pub fn read_npy(
        path: impl AsRef<Path>,
        tile_rows: usize,
        tile_cols: usize,
    ) -> Result<Self, LinalgError> {
        crate::npy::NpyMatrix::open(path)?.read_tiles(tile_rows, tile_cols)
    }
}

/// Entry (row, col) of the random matrix with `seed`, independent of tiling:
/// each row of the matrix has its own stream, so a tile draws its rows' streams
/// and skips to its columns.
fn random_block(seed: u64, r0: usize, c0: usize, rows: usize, cols: usize) -> Tile {
    let mut block = tile::zeros(rows, cols);
    for row in 0..rows {
        let mut rng = TileRng::for_tile(seed, r0 + row, 0);
        for _ in 0..c0 {
            rng.symmetric_unit();
        }
        for col in 0..cols {
            block[[row, col]] = rng.symmetric_unit();
        }
    }
    block
}

fn symmetric_entry(seed: u64, lo: usize, hi: usize) -> f64 {
    TileRng::for_tile(seed ^ 0x5350_4400, lo, hi).symmetric_unit()
}
