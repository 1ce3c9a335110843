//! TSQR: the QR factorization of a tall-skinny matrix held as one column of
//! tiles, by a reduction tree. Each tile is factored on its own (`Aᵢ = Qᵢ·Rᵢ`),
//! then groups of `arity` factors `R` are stacked and factored again, up to
//! one `R` at the root. With `Q` asked for, a second pass walks the tree back
//! down: each node multiplies its block of the node's `Q` by what its parent
//! hands down, and each tile's final `Q` is `Qᵢ` times its leaf's factor. All
//! products are tile-sized, so the whole `Q` is never gathered in one place.

use std::ops::Range;

use wukong_dag::{Dag, DagBuilder, DataId};

use super::{TileMap, dim32};
use crate::error::shape_mismatch;
use crate::kernels::Transpose;
use crate::ops::QrMethod;
use crate::{LinalgError, TileLayout, TileOp};

/// The shape of a TSQR reduction: factors combined per node, and how the
/// tiles of the matrix (the leaves) are factored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    /// Factors stacked and factored together at each inner node (≥ 2).
    pub arity: usize,
    /// How the leaves (and the stacked `R`s of inner nodes) are factored.
    pub leaf: QrMethod,
}

impl Default for Tree {
    /// Four factors per node (on 262144×128 in 8192-row tiles, 2 threads:
    /// 8% faster than a binary tree, as fast as 8) with the default method
    /// (CholeskyQR2, falling back to Householder).
    fn default() -> Self {
        Self::from(4)
    }
}

impl From<usize> for Tree {
    /// A tree of `arity` with the default leaves.
    fn from(arity: usize) -> Self {
        Self {
            arity,
            leaf: QrMethod::default(),
        }
    }
}

/// One factorization of the tree.
#[derive(Debug, Clone)]
struct Node {
    /// Its `R`, `k × cols`.
    r: DataId,
    /// Rows of its `R`.
    k: usize,
    /// Leaves: `[Q]` (`rows × k`); inner nodes: one block of `Q` per child,
    /// `k_child × k`. Empty without `Q`.
    q: Vec<DataId>,
    /// Its children in the level below (empty for leaves).
    children: Range<usize>,
}

/// The upward half of a TSQR emitted into a graph: the factorizations of
/// every level, leaves first.
#[derive(Debug, Clone)]
pub(crate) struct TsqrTree {
    levels: Vec<Vec<Node>>,
    /// Rows of each leaf tile.
    leaf_rows: Vec<usize>,
    cols: usize,
}

impl TsqrTree {
    /// Emits the factorizations of `tiles` (each `(item, rows)`, all `cols`
    /// wide) with groups of `arity` (≥ 2) per inner node.
    pub(crate) fn emit(
        builder: &mut DagBuilder<TileOp>,
        tiles: &[(DataId, usize)],
        cols: usize,
        tree: Tree,
        explicit_q: bool,
    ) -> Self {
        Self::emit_tree(builder, tiles, cols, (tree, explicit_q), false)
    }

    /// Like [`emit`](Self::emit); with `input` the tiles are the caller's
    /// matrix `A` and the leaves reject its NaN and ∞ (see `TileOp::Qr`).
    fn emit_tree(
        builder: &mut DagBuilder<TileOp>,
        tiles: &[(DataId, usize)],
        cols: usize,
        (tree, explicit_q): (Tree, bool),
        input: bool,
    ) -> Self {
        let mut first_row = 0;
        let leaves: Vec<Node> = tiles
            .iter()
            .enumerate()
            .map(|(index, &(tile, rows))| {
                let factoring = Factoring {
                    method: tree.leaf,
                    input_row: input.then_some(first_row as u64),
                };
                first_row += rows;
                factor(
                    builder,
                    &[(tile, rows)],
                    (cols, explicit_q, factoring),
                    [0, index],
                    0..0,
                )
            })
            .collect();
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|level| level.len() > 1) {
            let level = levels.len();
            let nodes = groups(below.len(), tree.arity)
                .into_iter()
                .enumerate()
                .map(|(index, range)| {
                    let parts: Vec<(DataId, usize)> =
                        below[range.clone()].iter().map(|c| (c.r, c.k)).collect();
                    factor(
                        builder,
                        &parts,
                        (cols, explicit_q, Factoring::inner(tree.leaf)),
                        [level, index],
                        range,
                    )
                })
                .collect();
            levels.push(nodes);
        }
        Self {
            levels,
            leaf_rows: tiles.iter().map(|&(_, rows)| rows).collect(),
            cols,
        }
    }

    /// A new graph whose input is the tall matrix `a`, with its TSQR tree.
    pub(crate) fn of_input(
        operation: &'static str,
        a: TileLayout,
        tree: Tree,
        explicit_q: bool,
    ) -> Result<(DagBuilder<TileOp>, TileMap, Self), LinalgError> {
        check_tall(operation, a, tree.arity)?;
        let mut builder = DagBuilder::new();
        let a_map = TileMap::inputs(&mut builder, a);
        let tree = Self::emit_tree(
            &mut builder,
            &column_tiles(&a_map),
            a.cols(),
            (tree, explicit_q),
            true,
        );
        Ok((builder, a_map, tree))
    }

    /// The root's `R` and its number of rows (`min(rows, cols)`).
    pub(crate) fn r(&self) -> (DataId, usize) {
        let root = &self.levels[self.levels.len() - 1][0];
        (root.r, root.k)
    }

    /// Emits the downward pass: the tiles of `Q·top` (or of `Q` itself
    /// without `top`), one per leaf, where `top` is a `k_root × width` item.
    /// The tree must have been emitted with `explicit_q`.
    pub(crate) fn emit_q(
        &self,
        builder: &mut DagBuilder<TileOp>,
        top: Option<(DataId, usize)>,
    ) -> Vec<DataId> {
        let width = top.map_or(self.r().1, |(_, width)| width);
        // What each node of the current level hands down: `None` is the identity.
        let mut handed: Vec<Option<DataId>> = vec![top.map(|(item, _)| item)];
        for (depth, level) in self.levels.iter().enumerate().rev() {
            if depth == 0 {
                return level
                    .iter()
                    .zip(&handed)
                    .enumerate()
                    .map(|(index, (leaf, factor))| {
                        let rows = self.leaf_rows[index];
                        self.times(
                            builder,
                            leaf.q[0],
                            *factor,
                            [rows, width, leaf.k],
                            [0, index],
                        )
                    })
                    .collect();
            }
            let below = &self.levels[depth - 1];
            let mut next = vec![None; below.len()];
            for (index, (node, factor)) in level.iter().zip(&handed).enumerate() {
                for (child, block) in node.children.clone().zip(&node.q) {
                    next[child] = Some(self.times(
                        builder,
                        *block,
                        *factor,
                        [below[child].k, width, node.k],
                        [depth, index],
                    ));
                }
            }
            handed = next;
        }
        Vec::new()
    }

    /// `block · factor`, or `block` itself when the factor is the identity.
    fn times(
        &self,
        builder: &mut DagBuilder<TileOp>,
        block: DataId,
        factor: Option<DataId>,
        [m, n, k]: [usize; 3],
        [level, index]: [usize; 2],
    ) -> DataId {
        let Some(factor) = factor else {
            return block;
        };
        let out = builder.data((m * n * 8) as u64);
        builder.task(
            TileOp::Gemm {
                trans_a: Transpose::No,
                trans_b: Transpose::No,
                alpha: 1.0,
                beta: 0.0,
                accumulate: false,
                dims: [dim32(m), dim32(n), dim32(k)],
                at: [dim32(level), dim32(index), u32::MAX],
            },
            &[block, factor],
            &[out],
        );
        out
    }

    /// Columns of the factored matrix.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }
}

/// How one node of the tree factors its stack.
struct Factoring {
    method: QrMethod,
    /// Leaves over the caller's matrix: the tile's first row.
    input_row: Option<u64>,
}

impl Factoring {
    /// Inner nodes stack `R`s: the leaves' method, nothing to check.
    fn inner(method: QrMethod) -> Self {
        Self {
            method,
            input_row: None,
        }
    }
}

/// Emits the QR of `parts` (items with their rows) stacked on top of each other.
fn factor(
    builder: &mut DagBuilder<TileOp>,
    parts: &[(DataId, usize)],
    (cols, explicit_q, factoring): (usize, bool, Factoring),
    [level, index]: [usize; 2],
    children: Range<usize>,
) -> Node {
    let bytes = |rows: usize, cols: usize| (rows * cols * 8) as u64;
    let rows: usize = parts.iter().map(|&(_, rows)| rows).sum();
    let k = rows.min(cols);
    let q: Vec<DataId> = if explicit_q {
        parts
            .iter()
            .map(|&(_, rows)| builder.data(bytes(rows, k)))
            .collect()
    } else {
        Vec::new()
    };
    let r = builder.data(bytes(k, cols));
    let reads: Vec<DataId> = parts.iter().map(|&(item, _)| item).collect();
    let mut writes = q.clone();
    writes.push(r);
    builder.task(
        TileOp::Qr {
            rows: rows as u64,
            cols: dim32(cols),
            parts: dim32(parts.len()),
            explicit_q,
            method: factoring.method,
            at: [dim32(level), dim32(index)],
            input_row: factoring.input_row,
        },
        &reads,
        &writes,
    );
    Node { r, k, q, children }
}

/// Splits `count` consecutive nodes into groups of `arity`; a last group of
/// one joins the group before it, so that every inner node combines at least two.
fn groups(count: usize, arity: usize) -> Vec<Range<usize>> {
    let mut groups: Vec<Range<usize>> = (0..count)
        .step_by(arity)
        .map(|start| start..(start + arity).min(count))
        .collect();
    if groups.len() > 1 && groups.last().is_some_and(|g| g.len() == 1) {
        let last = groups.pop().map_or(count, |g| g.end);
        if let Some(previous) = groups.last_mut() {
            previous.end = last;
        }
    }
    groups
}

/// Checks that `a` is one column of tiles and `arity` can reduce.
pub(crate) fn check_tall(
    operation: &'static str,
    a: TileLayout,
    arity: usize,
) -> Result<(), LinalgError> {
    if a.grid().1 != 1 {
        return Err(shape_mismatch(
            operation,
            format!(
                "the matrix must be one column of tiles (tile columns = columns = {}), \
                 but its tiles have {} columns",
                a.cols(),
                a.tile_cols()
            ),
        ));
    }
    check_arity(operation, arity)
}

/// A reduction tree must combine at least two factors per node.
pub(crate) fn check_arity(operation: &'static str, arity: usize) -> Result<(), LinalgError> {
    if arity < 2 {
        return Err(shape_mismatch(
            operation,
            format!("the reduction tree needs an arity of at least 2, got {arity}"),
        ));
    }
    Ok(())
}

/// The items of a one-column tile map with the rows of each tile.
pub(crate) fn column_tiles(map: &TileMap) -> Vec<(DataId, usize)> {
    (0..map.layout.grid().0)
        .filter_map(|i| map.get(i, 0).map(|item| (item, map.layout.rows_of(i))))
        .collect()
}

/// The graph of a TSQR.
#[derive(Debug)]
pub struct TsqrPlan {
    /// The graph.
    pub dag: Dag<TileOp>,
    /// Input tiles of `A` (one column of tiles).
    pub a: TileMap,
    /// `R`: `min(m, n) × n`, upper triangular.
    pub r: DataId,
    /// Shape of `R`.
    pub r_shape: (usize, usize),
    /// Tiles of the thin `Q` (laid out like `A` when `m ≥ n`), when asked for.
    pub q: Option<TileMap>,
}

/// Plans the TSQR of `a` (one column of tiles) with a reduction `tree` (an
/// arity, or a [`Tree`]); `Q` is formed only with `explicit_q`.
pub fn tsqr_plan(
    a: TileLayout,
    tree: impl Into<Tree>,
    explicit_q: bool,
) -> Result<TsqrPlan, LinalgError> {
    let (mut builder, a_map, tree) = TsqrTree::of_input("tsqr", a, tree.into(), explicit_q)?;
    let (r, k) = tree.r();
    builder.output(r);
    let q = if explicit_q {
        let layout = TileLayout::new(a.rows(), k, a.tile_rows(), k.max(1))?;
        let tiles = tree.emit_q(&mut builder, None);
        for &tile in &tiles {
            builder.output(tile);
        }
        Some(TileMap::full(layout, &tiles))
    } else {
        None
    };
    Ok(TsqrPlan {
        dag: builder.build()?,
        a: a_map,
        r,
        r_shape: (k, tree.cols()),
        q,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_never_leave_a_node_alone() {
        assert_eq!(groups(5, 2), vec![0..2, 2..5]);
        assert_eq!(groups(4, 2), vec![0..2, 2..4]);
        assert_eq!(groups(7, 3), vec![0..3, 3..7]);
        assert_eq!(groups(1, 4), vec![0..1]);
        assert_eq!(groups(9, 4), vec![0..4, 4..9]);
    }

    #[test]
    fn task_counts_follow_the_tree() {
        // 32 leaves, binary tree: 31 inner nodes. With Q, every edge under a
        // node other than the root carries a small product (30 nodes × 2),
        // and every leaf multiplies its Q by what it is handed (32).
        let layout = TileLayout::new(32 * 16, 8, 16, 8).unwrap();
        let plan = tsqr_plan(layout, 2, false).unwrap();
        assert_eq!(plan.dag.num_tasks(), 63);
        let plan = tsqr_plan(layout, 2, true).unwrap();
        assert_eq!(plan.dag.num_tasks(), 63 + 60 + 32);
        let plan = tsqr_plan(layout, 32, true).unwrap();
        assert_eq!(plan.dag.num_tasks(), 33 + 32);
    }

    #[test]
    fn bad_shapes_are_rejected() {
        let err = tsqr_plan(TileLayout::new(64, 8, 16, 4).unwrap(), 2, false).unwrap_err();
        assert!(err.to_string().contains("one column of tiles"), "{err}");
        let err = tsqr_plan(TileLayout::new(64, 8, 16, 8).unwrap(), 1, false).unwrap_err();
        assert!(err.to_string().contains("arity of at least 2"), "{err}");
    }
}
