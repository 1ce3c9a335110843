//! Tiled algorithms as task-graph builders. Each checks its operands' shapes
//! before building anything and returns a plan: the graph plus which data items
//! hold which input and output tiles.

pub mod cholesky;
pub mod gemm;

use wukong_dag::DataId;

use crate::TileLayout;

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
    fn new(layout: TileLayout) -> Self {
        Self {
            layout,
            items: vec![None; layout.num_tiles()],
        }
    }

    /// A map in which every tile is present, from items in row-major tile order.
    fn full(layout: TileLayout, items: &[DataId]) -> Self {
        Self {
            layout,
            items: items.iter().copied().map(Some).collect(),
        }
    }

    fn set(&mut self, i: usize, j: usize, data: DataId) {
        let index = self.layout.tile_index(i, j);
        self.items[index] = Some(data);
    }

    /// Data item of tile `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> Option<DataId> {
        self.items[self.layout.tile_index(i, j)]
    }
}

fn dim32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
