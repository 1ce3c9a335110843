//! Lazy composition: operations on [`Lazy`] handles add tasks to one shared
//! graph instead of running, so a chain such as `cholesky(AᵀA + λI)` then a
//! solve becomes a single graph. Intermediate tiles are ordinary items of that
//! graph: an executor that produces one and consumes it keeps it in its cache,
//! and only results asked for (and edges between executors) reach the store.
//!
//! ```
//! use wukong_linalg::{BlockMatrix, Graph, execute_serial, BackendKind};
//!
//! let graph = Graph::new();
//! let a = graph.input(&BlockMatrix::random(60, 20, 16, 16, 1)?)?;
//! let b = graph.input(&BlockMatrix::random(20, 3, 16, 16, 2)?)?;
//! // Ridge regression's normal equations: (AᵀA + λI)·x = b.
//! let gram = a.t().matmul(&a)?.add_identity(0.5)?;
//! let x = gram.cholesky_solve(&b)?;
//! let composed = graph.finish(&[&x])?;
//! let values = execute_serial(&composed.dag, composed.inputs.clone(), BackendKind::Faer.kernels()?)?;
//! let x = composed.assemble(0, &values)?;
//! assert_eq!(x.shape(), (20, 3));
//! # Ok::<(), wukong_linalg::LinalgError>(())
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use wukong_dag::{Dag, DagBuilder, DataId};

use crate::algorithms::cholesky::{check_square_tiles, emit_cholesky};
use crate::algorithms::gemm::{Operand, emit_product};
use crate::algorithms::solve::emit_triangular_solve;
use crate::algorithms::{TileMap, dim32};
use crate::error::shape_mismatch;
use crate::kernels::{Transpose, Triangle};
use crate::{BlockMatrix, LinalgError, Tile, TileLayout, TileOp};

#[derive(Debug, Default)]
struct State {
    builder: DagBuilder<TileOp>,
    inputs: Vec<(DataId, Arc<Tile>)>,
    finished: bool,
}

/// A graph under construction; [`input`](Graph::input) starts handles.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    state: Rc<RefCell<State>>,
}

/// A matrix that a graph will compute: a tile map and whether it is used
/// transposed. Cheap to clone; operations return new handles.
#[derive(Debug, Clone)]
pub struct Lazy {
    state: Rc<RefCell<State>>,
    map: TileMap,
    trans: Transpose,
}

/// A finished graph: its tasks, the input tiles to give it, and where each
/// requested result lives.
#[derive(Debug)]
pub struct Composed {
    /// The graph.
    pub dag: Dag<TileOp>,
    /// Input tiles, by item.
    pub inputs: Vec<(DataId, Arc<Tile>)>,
    /// The tiles of each requested result, in the order asked.
    pub outputs: Vec<TileMap>,
}

impl Composed {
    /// Result `index` as a matrix, from the values a run returned.
    pub fn assemble(
        &self,
        index: usize,
        values: &HashMap<DataId, Arc<Tile>>,
    ) -> Result<BlockMatrix, LinalgError> {
        let map = self
            .outputs
            .get(index)
            .ok_or(LinalgError::WrongInputCount {
                operation: "Composed::assemble: no such result",
                expected: self.outputs.len(),
                got: index,
            })?;
        map.assemble(values)
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle on `matrix`, whose tiles become inputs of the graph (shared,
    /// not copied). A NaN or infinity in it is an error naming its place.
    pub fn input(&self, matrix: &BlockMatrix) -> Result<Lazy, LinalgError> {
        matrix.check_finite("input")?;
        self.input_where(matrix, |_, _| true)
    }

    /// A handle on the `triangle` of `matrix` (diagonal included), the rest
    /// taken as zero, as a triangular solve or factor reads it: tiles wholly
    /// on the other side of the diagonal read nothing and products with the
    /// handle skip them; the diagonal tiles enter with their other triangle
    /// zeroed (a copy of those tiles only).
    pub fn input_triangle(
        &self,
        matrix: &BlockMatrix,
        triangle: Triangle,
    ) -> Result<Lazy, LinalgError> {
        matrix.check_finite_triangle("input", triangle)?;
        let layout = matrix.layout();
        let inside = |row: usize, col: usize| match triangle {
            Triangle::Lower => row >= col,
            Triangle::Upper => row <= col,
        };
        // Which side of the diagonal a tile lies on: `Some(true)` wholly in
        // the triangle, `Some(false)` wholly outside, `None` across it.
        let side = |i: usize, j: usize| {
            let (r0, c0) = (layout.row_offset(i), layout.col_offset(j));
            let (r, c) = layout.tile_shape(i, j);
            let (first_row, last_row, first_col, last_col) = (r0, r0 + r - 1, c0, c0 + c - 1);
            match triangle {
                Triangle::Lower if first_row >= last_col => Some(true),
                Triangle::Lower if last_row < first_col => Some(false),
                Triangle::Upper if last_row <= first_col => Some(true),
                Triangle::Upper if first_row > last_col => Some(false),
                _ => None,
            }
        };
        let (rows, cols) = layout.grid();
        let mut tiles = Vec::with_capacity(layout.num_tiles());
        for i in 0..rows {
            for j in 0..cols {
                let tile = matrix.tile(i, j);
                tiles.push(match side(i, j) {
                    Some(_) => Arc::clone(tile),
                    None => {
                        let (r0, c0) = (layout.row_offset(i), layout.col_offset(j));
                        let mut copy = crate::tile::to_column_major(tile.view());
                        for ((x, y), value) in copy.indexed_iter_mut() {
                            if !inside(r0 + x, c0 + y) {
                                *value = 0.0;
                            }
                        }
                        Arc::new(copy)
                    }
                });
            }
        }
        let masked = BlockMatrix::from_tiles(layout, tiles)?;
        self.input_where(&masked, |i, j| side(i, j) != Some(false))
    }

    fn input_where(
        &self,
        matrix: &BlockMatrix,
        keep: impl Fn(usize, usize) -> bool,
    ) -> Result<Lazy, LinalgError> {
        let mut state = self.state.borrow_mut();
        if state.finished {
            return Err(finished());
        }
        let layout = matrix.layout();
        let mut map = TileMap::new(layout);
        let (rows, cols) = layout.grid();
        for i in 0..rows {
            for j in 0..cols {
                if keep(i, j) {
                    let item = state.builder.input(layout.tile_bytes(i, j));
                    map.set(i, j, item);
                    state.inputs.push((item, Arc::clone(matrix.tile(i, j))));
                }
            }
        }
        Ok(Lazy {
            state: Rc::clone(&self.state),
            map,
            trans: Transpose::No,
        })
    }

    /// Marks `results` as the graph's outputs and builds it. Handles of this
    /// graph cannot be extended afterwards.
    pub fn finish(&self, results: &[&Lazy]) -> Result<Composed, LinalgError> {
        let mut outputs = Vec::with_capacity(results.len());
        for result in results {
            if !Rc::ptr_eq(&result.state, &self.state) {
                return Err(foreign());
            }
            outputs.push(result.materialized()?.map);
        }
        let mut state = self.state.borrow_mut();
        if state.finished {
            return Err(finished());
        }
        state.finished = true;
        for map in &outputs {
            for item in map.items.iter().flatten() {
                state.builder.output(*item);
            }
        }
        let builder = std::mem::take(&mut state.builder);
        Ok(Composed {
            dag: builder.build()?,
            inputs: std::mem::take(&mut state.inputs),
            outputs,
        })
    }
}

fn foreign() -> LinalgError {
    shape_mismatch(
        "lazy graph",
        "a handle of another graph was used: combine handles of one Graph only".into(),
    )
}

fn finished() -> LinalgError {
    shape_mismatch(
        "lazy graph",
        "the graph was already finished: start a new Graph".into(),
    )
}

impl Lazy {
    /// `(rows, cols)` of the matrix this handle stands for.
    pub fn shape(&self) -> (usize, usize) {
        let l = self.map.layout;
        match self.trans {
            Transpose::No => (l.rows(), l.cols()),
            Transpose::Yes => (l.cols(), l.rows()),
        }
    }

    /// The transpose (no task: later operations read the tiles transposed).
    pub fn t(&self) -> Lazy {
        Lazy {
            trans: match self.trans {
                Transpose::No => Transpose::Yes,
                Transpose::Yes => Transpose::No,
            },
            ..self.clone()
        }
    }

    fn check_same_graph(&self, other: &Lazy) -> Result<(), LinalgError> {
        if !Rc::ptr_eq(&self.state, &other.state) {
            return Err(foreign());
        }
        if self.state.borrow().finished {
            return Err(finished());
        }
        Ok(())
    }

    fn with(&self, map: TileMap) -> Lazy {
        Lazy {
            state: Rc::clone(&self.state),
            map,
            trans: Transpose::No,
        }
    }

    /// The layout of op(M) and tile `(i, j)` of it with its transposition.
    fn op_layout(&self) -> Result<TileLayout, LinalgError> {
        let l = self.map.layout;
        match self.trans {
            Transpose::No => Ok(l),
            Transpose::Yes => Ok(l.transposed()),
        }
    }

    fn op_tile(&self, i: usize, j: usize) -> Option<DataId> {
        match self.trans {
            Transpose::No => self.map.get(i, j),
            Transpose::Yes => self.map.get(j, i),
        }
    }

    /// `α·op(self) + β·op(other) + σ·I`, one task per tile (tiles that are
    /// used as they are and unchanged pass through).
    fn combine(
        &self,
        alpha: f64,
        other: Option<(&Lazy, f64)>,
        shift: f64,
    ) -> Result<Lazy, LinalgError> {
        if let Some((other, _)) = other {
            self.check_same_graph(other)?;
        } else if self.state.borrow().finished {
            return Err(finished());
        }
        let layout = self.op_layout()?;
        if let Some((other, _)) = other {
            let theirs = other.op_layout()?;
            if theirs != layout {
                return Err(shape_mismatch(
                    "add",
                    format!(
                        "{}×{} in {}×{} tiles plus {}×{} in {}×{} tiles",
                        layout.rows(),
                        layout.cols(),
                        layout.tile_rows(),
                        layout.tile_cols(),
                        theirs.rows(),
                        theirs.cols(),
                        theirs.tile_rows(),
                        theirs.tile_cols()
                    ),
                ));
            }
        }
        crate::algorithms::check_scalars(&[
            ("alpha", alpha),
            ("beta", other.map_or(0.0, |(_, b)| b)),
            ("shift", shift),
        ])?;
        let mut state = self.state.borrow_mut();
        let mut out = TileMap::new(layout);
        let (rows, cols) = layout.grid();
        for i in 0..rows {
            for j in 0..cols {
                let (r0, c0) = (layout.row_offset(i), layout.col_offset(j));
                let (r, c) = layout.tile_shape(i, j);
                let touches_diagonal = shift != 0.0 && r0 < c0 + c && c0 < r0 + r;
                let x = self.op_tile(i, j);
                let y = other.and_then(|(o, _)| o.op_tile(i, j));
                let plain = other.is_none()
                    && alpha == 1.0
                    && !touches_diagonal
                    && self.trans == Transpose::No;
                if plain {
                    if let Some(x) = x {
                        out.set(i, j, x);
                    }
                    continue;
                }
                let beta = other.map_or(0.0, |(_, b)| b);
                let mut reads = Vec::new();
                let mut scales = [0.0; 2];
                let mut trans = [Transpose::No; 2];
                for (item, scale, t) in [
                    (x, alpha, self.trans),
                    (y, beta, other.map_or(Transpose::No, |(o, _)| o.trans)),
                ] {
                    if let Some(item) = item {
                        scales[reads.len()] = scale;
                        trans[reads.len()] = t;
                        reads.push(item);
                    }
                }
                if reads.is_empty() && !touches_diagonal {
                    continue;
                }
                let item = state.builder.data(layout.tile_bytes(i, j));
                state.builder.task(
                    TileOp::Combine {
                        terms: dim32(reads.len()),
                        scales,
                        trans,
                        shift,
                        dims: [dim32(r), dim32(c)],
                        offset: r0 as i64 - c0 as i64,
                    },
                    &reads,
                    &[item],
                );
                out.set(i, j, item);
            }
        }
        drop(state);
        Ok(self.with(out))
    }

    /// This handle with its transposition carried out in tasks.
    fn materialized(&self) -> Result<Lazy, LinalgError> {
        match self.trans {
            Transpose::No => Ok(self.clone()),
            Transpose::Yes => self.combine(1.0, None, 0.0),
        }
    }

    /// `self · other`.
    pub fn matmul(&self, other: &Lazy) -> Result<Lazy, LinalgError> {
        self.check_same_graph(other)?;
        let map = {
            let mut state = self.state.borrow_mut();
            emit_product(
                &mut state.builder,
                Operand::new(&self.map, self.trans),
                Operand::new(&other.map, other.trans),
                1.0,
                None,
            )?
        };
        Ok(self.with(map))
    }

    /// `self + other`.
    pub fn add(&self, other: &Lazy) -> Result<Lazy, LinalgError> {
        self.combine(1.0, Some((other, 1.0)), 0.0)
    }

    /// `α·self + β·other`.
    pub fn axpby(&self, alpha: f64, beta: f64, other: &Lazy) -> Result<Lazy, LinalgError> {
        self.combine(alpha, Some((other, beta)), 0.0)
    }

    /// `α·self`.
    pub fn scale(&self, alpha: f64) -> Result<Lazy, LinalgError> {
        self.combine(alpha, None, 0.0)
    }

    /// `self + λ·I` (tiles off the diagonal pass through untouched).
    pub fn add_identity(&self, lambda: f64) -> Result<Lazy, LinalgError> {
        self.combine(1.0, None, lambda)
    }

    /// The lower Cholesky factor `L` of this symmetric positive-definite
    /// matrix (square, in square tiles; its lower triangle is read).
    pub fn cholesky(&self) -> Result<Lazy, LinalgError> {
        let m = self.materialized()?;
        check_square_tiles("cholesky", m.map.layout)?;
        let l = {
            let mut state = self.state.borrow_mut();
            emit_cholesky(&mut state.builder, &m.map)
        };
        Ok(self.with(l))
    }

    /// `X` solving `op(T)·X = B` for this triangular matrix `T` (its
    /// `triangle` is read), with `b` in the same row tiles.
    pub fn solve_triangular(&self, triangle: Triangle, b: &Lazy) -> Result<Lazy, LinalgError> {
        self.check_same_graph(b)?;
        let b = b.materialized()?;
        check_square_tiles("triangular solve", self.map.layout)?;
        let (t, rhs) = (self.map.layout, b.map.layout);
        if rhs.rows() != t.rows() || rhs.tile_rows() != t.tile_rows() {
            return Err(shape_mismatch(
                "triangular solve",
                format!(
                    "the matrix is {}×{} in {}-row tiles but B is {}×{} in {}-row tiles",
                    t.rows(),
                    t.cols(),
                    t.tile_rows(),
                    rhs.rows(),
                    rhs.cols(),
                    rhs.tile_rows()
                ),
            ));
        }
        let x = {
            let mut state = self.state.borrow_mut();
            emit_triangular_solve(&mut state.builder, &self.map, triangle, self.trans, &b.map)
        };
        Ok(self.with(x))
    }

    /// `A = Q·R` of this tall-skinny matrix (one column of tiles) by TSQR
    /// with reduction `tree`: `(Q, R)`, `Q` only with `explicit_q`, `R` as
    /// one `min(m, n) × n` tile.
    pub fn tsqr(
        &self,
        tree: impl Into<crate::Tree>,
        explicit_q: bool,
    ) -> Result<(Option<Lazy>, Lazy), LinalgError> {
        let m = self.materialized()?;
        let layout = m.map.layout;
        let tree = tree.into();
        crate::algorithms::tsqr::check_tall("tsqr", layout, tree.arity)?;
        let mut state = self.state.borrow_mut();
        let tsqr = crate::algorithms::tsqr::TsqrTree::emit(
            &mut state.builder,
            &crate::algorithms::tsqr::column_tiles(&m.map),
            layout.cols(),
            tree,
            explicit_q,
        );
        let (r, k) = tsqr.r();
        let r_layout = TileLayout::new(k, layout.cols(), k.max(1), layout.cols())?;
        let mut r_map = TileMap::new(r_layout);
        r_map.set(0, 0, r);
        let q = if explicit_q {
            let tiles = tsqr.emit_q(&mut state.builder, None);
            let q_layout = TileLayout::new(layout.rows(), k, layout.tile_rows(), k.max(1))?;
            Some(self.with(TileMap::full(q_layout, &tiles)))
        } else {
            None
        };
        drop(state);
        Ok((q, self.with(r_map)))
    }

    /// `A = Q·R` of this matrix (at least as many rows as columns, square
    /// tiles) by tile Householder QR: `(Q, R)`, the thin `Q` only with
    /// `explicit_q`, `R` in square tiles.
    pub fn qr(&self, explicit_q: bool) -> Result<(Option<Lazy>, Lazy), LinalgError> {
        let m = self.materialized()?;
        crate::algorithms::qr::check_qr(m.map.layout, None)?;
        let (r, q, _) = {
            let mut state = self.state.borrow_mut();
            crate::algorithms::qr::emit_qr(
                &mut state.builder,
                &m.map,
                crate::Panel::default(),
                explicit_q,
                None,
            )?
        };
        Ok((q.map(|q| self.with(q)), self.with(r)))
    }

    /// The full SVD of this matrix (at least as many rows as columns, square
    /// tiles; factor `self.t()` for a wide one) through its tile reduction to
    /// band form, with the default panels: `(s, vectors)`, `s` the singular
    /// values largest first as an `n × 1` matrix and, with `vectors`, `(U, V)`
    /// (`U` tiled like this matrix, `V` `n × n` in square tiles).
    pub fn svd(&self, vectors: bool) -> Result<(Lazy, Option<(Lazy, Lazy)>), LinalgError> {
        let m = self.materialized()?;
        let layout = m.map.layout;
        crate::algorithms::svd::check_full(layout)?;
        let (s, parts) = {
            let mut state = self.state.borrow_mut();
            crate::algorithms::svd::emit_full_svd(
                &mut state.builder,
                &m.map,
                crate::Panel::default(),
                vectors,
            )?
        };
        let n = layout.cols();
        let mut s_map = TileMap::new(TileLayout::new(n, 1, n.max(1), 1)?);
        s_map.set(0, 0, s);
        Ok((
            self.with(s_map),
            parts.map(|(u, v)| (self.with(u), self.with(v))),
        ))
    }

    /// `X` solving `self·X = B` for this symmetric positive-definite matrix:
    /// its Cholesky factor and two triangular solves, in the same graph.
    pub fn cholesky_solve(&self, b: &Lazy) -> Result<Lazy, LinalgError> {
        let l = self.cholesky()?;
        let y = l.solve_triangular(Triangle::Lower, b)?;
        l.t().solve_triangular(Triangle::Lower, &y)
    }
}
