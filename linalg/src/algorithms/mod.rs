//! Tiled algorithms as task-graph builders. Each checks its operands' shapes
//! before building anything and returns a plan: the graph plus which data items
//! hold which input and output tiles.

pub mod cholesky;
pub mod gemm;
pub mod qr;
pub mod solve;
pub mod svd;
pub mod tsqr;

use wukong_dag::{DagBuilder, DataId};

use crate::{TileLayout, TileOp};

/// Where the tiles of one matrix live in a graph: one entry per tile in
/// row-major tile order, `None` for tiles that are structurally zero or unused.
#[derive(Debug, Clone)]
pub struct TileMap {
    /// The matrix's layout.
    pub layout: TileLayout,
    /// Data item of each tile.
    pub items: Vec<Option<DataId>>,
}

impl TileMap {
    pub(crate) fn new(layout: TileLayout) -> Self {
        Self {
            layout,
            items: vec![None; layout.num_tiles()],
        }
    }

    /// Declares every tile of `layout` as an input of the graph, in row-major
    /// tile order.
    pub(crate) fn inputs(builder: &mut DagBuilder<TileOp>, layout: TileLayout) -> Self {
        let (rows, cols) = layout.grid();
        let items: Vec<DataId> = (0..rows * cols)
            .map(|index| builder.input(layout.tile_bytes(index / cols, index % cols)))
            .collect();
        Self::full(layout, &items)
    }

    /// A map in which every tile is present, from items in row-major tile order.
    pub(crate) fn full(layout: TileLayout, items: &[DataId]) -> Self {
        Self {
            layout,
            items: items.iter().copied().map(Some).collect(),
        }
    }

    pub(crate) fn set(&mut self, i: usize, j: usize, data: DataId) {
        let index = self.layout.tile_index(i, j);
        self.items[index] = Some(data);
    }

    /// The matrix these tiles form, from the values of a run; tiles the map
    /// leaves out are zero and share one allocation per shape.
    pub fn assemble(
        &self,
        values: &std::collections::HashMap<DataId, std::sync::Arc<crate::Tile>>,
    ) -> Result<crate::BlockMatrix, crate::LinalgError> {
        let layout = self.layout;
        let mut zeros = std::collections::HashMap::new();
        let grid_cols = layout.grid().1;
        let tiles = self
            .items
            .iter()
            .enumerate()
            .map(|(index, item)| match item.and_then(|d| values.get(&d)) {
                Some(tile) => std::sync::Arc::clone(tile),
                None => {
                    let shape = layout.tile_shape(index / grid_cols, index % grid_cols);
                    std::sync::Arc::clone(zeros.entry(shape).or_insert_with(|| {
                        std::sync::Arc::new(crate::tile::zeros(shape.0, shape.1))
                    }))
                }
            })
            .collect();
        crate::BlockMatrix::from_tiles(layout, tiles)
    }

    /// The same items as the tiles of the transposed matrix (the tiles
    /// themselves are not transposed: tile `(j, i)` of the result is the item
    /// of tile `(i, j)`).
    pub(crate) fn transposed(&self) -> Self {
        let layout = self.layout;
        let mut map = Self::new(layout.transposed());
        let (rows, cols) = layout.grid();
        for i in 0..rows {
            for j in 0..cols {
                if let Some(item) = self.get(i, j) {
                    map.set(j, i, item);
                }
            }
        }
        map
    }

    /// Data item of tile `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> Option<DataId> {
        self.items[self.layout.tile_index(i, j)]
    }
}

/// Fails with [`LinalgError::NonFinite`](crate::LinalgError::NonFinite) naming
/// the first scalar that is NaN or infinite.
pub(crate) fn check_scalars(scalars: &[(&'static str, f64)]) -> Result<(), crate::LinalgError> {
    match scalars.iter().find(|(_, value)| !value.is_finite()) {
        Some(&(what, value)) => Err(crate::LinalgError::NonFinite {
            matrix: what,
            row: 0,
            col: 0,
            value,
        }),
        None => Ok(()),
    }
}

pub(crate) fn dim32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Runs a plan's graph in topological order on the calling thread, with no
/// executor: for tests, debugging and tiny problems. Returns every item the
/// graph computed or was given.
pub fn execute_serial(
    dag: &wukong_dag::Dag<TileOp>,
    inputs: Vec<(DataId, std::sync::Arc<crate::Tile>)>,
    backend: &dyn crate::TileBackend,
) -> Result<std::collections::HashMap<DataId, std::sync::Arc<crate::Tile>>, crate::LinalgError> {
    let mut values: std::collections::HashMap<_, _> = inputs.into_iter().collect();
    for &task in dag.topological_order() {
        let reads = dag
            .reads(task)
            .iter()
            .map(|item| {
                values
                    .get(item)
                    .cloned()
                    .ok_or(crate::LinalgError::WrongInputCount {
                        operation: "execute_serial: an input of the graph was not given",
                        expected: dag.reads(task).len(),
                        got: 0,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = dag.op(task).execute(backend, reads)?;
        for (item, tile) in dag.writes(task).iter().zip(outputs) {
            values.insert(*item, std::sync::Arc::new(tile));
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
