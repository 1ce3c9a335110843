//! QR, SVD and solves on a [`Runtime`]: each builds one graph and runs it on
//! the runtime's executors (threads, worker processes or Lambda).

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{Array2, s};
use wukong_dag::DataId;
use wukong_executor::{RunOptions, RunReport};
use wukong_linalg::{
    BlockMatrix, Graph, Lazy, LinalgError, Panel, RandomizedSvd, SvdPlan, Tile, TileLayout,
    Transpose, Tree, Triangle, V, cholesky_solve_plan, full_svd_plan_with, lstsq_plan, qr_plan,
    qr_plan_with, randomized_svd_plan, tall_svd_plan, tile, triangular_solve_plan, tsqr_plan,
};

use crate::runtime::{assemble, tiles_of};
use crate::{Error, Runtime};

/// `A = Q·R` of a tall-skinny matrix.
#[derive(Debug)]
pub struct QrFactors {
    /// The thin `Q` (`m × min(m, n)`), tiled like `A`, when it was asked for.
    pub q: Option<BlockMatrix>,
    /// `R`, `min(m, n) × n`, upper triangular.
    pub r: Array2<f64>,
    /// The run.
    pub report: RunReport,
    /// Tasks in the graph.
    pub tasks: usize,
}

/// `A = Q·R` of a general matrix in tiles.
#[derive(Debug)]
pub struct TiledQr {
    /// The thin `Q`, tiled like `A`, when it was asked for.
    pub q: Option<BlockMatrix>,
    /// `R` (`n × n`, square tiles, zero below the diagonal).
    pub r: BlockMatrix,
    /// The run.
    pub report: RunReport,
    /// Tasks in the graph.
    pub tasks: usize,
}

/// `A ≈ U·diag(s)·Vᵀ`.
#[derive(Debug)]
pub struct SvdFactors {
    /// Left singular vectors, tiled like `A`'s rows, when asked for.
    pub u: Option<BlockMatrix>,
    /// Singular values, largest first.
    pub s: Vec<f64>,
    /// Right singular vectors, transposed (`k × n`), when asked for.
    pub vt: Option<Array2<f64>>,
    /// The run.
    pub report: RunReport,
    /// Tasks in the graph.
    pub tasks: usize,
}

/// A solution with the facts of its run.
#[derive(Debug)]
pub struct Solved {
    /// `X`, tiled like the right-hand sides (least squares: one tile).
    pub x: BlockMatrix,
    /// The run.
    pub report: RunReport,
    /// Tasks in the graph.
    pub tasks: usize,
}

fn take(outputs: &mut HashMap<DataId, Arc<Tile>>, item: DataId) -> Result<Tile, Error> {
    let tile = outputs.remove(&item).ok_or(LinalgError::WrongInputCount {
        operation: "collecting a result: the run did not return it",
        expected: 1,
        got: 0,
    })?;
    Ok(tile::unshared(tile))
}

/// The first `cols` columns of a one-column tile matrix.
fn first_columns(matrix: BlockMatrix, cols: usize) -> Result<BlockMatrix, Error> {
    if matrix.shape().1 == cols {
        return Ok(matrix);
    }
    let layout = matrix.layout();
    let narrow = TileLayout::new(layout.rows(), cols, layout.tile_rows(), cols)?;
    let tiles = matrix
        .tiles()
        .iter()
        .map(|t| Arc::new(tile::to_column_major(t.slice(s![.., ..cols]))))
        .collect();
    Ok(BlockMatrix::from_tiles(narrow, tiles)?)
}

impl Runtime {
    /// Runs a lazily composed graph (see [`Graph`]) once and returns each of
    /// `results` as a matrix, in order, with the run's report. Intermediate
    /// tiles are not results: they stay with the executors that use them.
    pub fn compute(
        &self,
        graph: &Graph,
        results: &[&Lazy],
        options: &RunOptions<'_>,
    ) -> Result<(Vec<BlockMatrix>, RunReport), Error> {
        let composed = graph.finish(results)?;
        let inputs = composed.inputs.clone();
        let (outputs, report) = self.run_graph(&composed.dag, inputs, options)?;
        let matrices = (0..composed.outputs.len())
            .map(|index| composed.assemble(index, &outputs))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((matrices, report))
    }

    /// `A = Q·R` of a tall-skinny `A` held as one column of tiles, by TSQR
    /// with the default reduction tree ([`Tree::default`]: four factors per node,
    /// CholeskyQR2 falling back to Householder).
    pub fn tsqr(&self, a: &BlockMatrix) -> Result<(BlockMatrix, Array2<f64>), Error> {
        let factors = self.tsqr_with(a, Tree::default(), true, &RunOptions::default())?;
        let q = factors.q.ok_or(LinalgError::WrongInputCount {
            operation: "tsqr: Q",
            expected: 1,
            got: 0,
        })?;
        Ok((q, factors.r))
    }

    /// TSQR with a reduction `tree`: an arity (factors per node, Householder
    /// leaves) or a [`Tree`] naming the leaves' method too; `Q` is formed only
    /// with `explicit_q` (`R` alone costs about half).
    pub fn tsqr_with(
        &self,
        a: &BlockMatrix,
        tree: impl Into<Tree>,
        explicit_q: bool,
        options: &RunOptions<'_>,
    ) -> Result<QrFactors, Error> {
        let plan = tsqr_plan(a.layout(), tree, explicit_q)?;
        self.check_tall_input(a)?;
        let (mut outputs, report) = self.run_graph(&plan.dag, tiles_of(&plan.a, a), options)?;
        let q = match &plan.q {
            Some(map) => Some(assemble(map, &mut outputs)?),
            None => None,
        };
        Ok(QrFactors {
            q,
            r: take(&mut outputs, plan.r)?,
            report,
            tasks: plan.dag.num_tasks(),
        })
    }

    /// `A = Q·R` of a general `A` (at least as many rows as columns, square
    /// tiles) by tile Householder QR; `Q` (thin, tiled like `A`) only with
    /// `explicit_q`. `R` is returned in tiles, zero below the diagonal.
    pub fn qr_with(
        &self,
        a: &BlockMatrix,
        explicit_q: bool,
        options: &RunOptions<'_>,
    ) -> Result<TiledQr, Error> {
        self.qr_with_panel(a, Panel::default(), explicit_q, options)
    }

    /// [`qr_with`](Self::qr_with) with the panels reduced as `panel` says
    /// (`Panel::Binary`: communication-avoiding TT trees).
    pub fn qr_with_panel(
        &self,
        a: &BlockMatrix,
        panel: Panel,
        explicit_q: bool,
        options: &RunOptions<'_>,
    ) -> Result<TiledQr, Error> {
        let plan = qr_plan_with(a.layout(), panel, explicit_q, None)?;
        a.check_finite("A")?;
        let (mut outputs, report) = self.run_graph(&plan.dag, tiles_of(&plan.a, a), options)?;
        let q = match &plan.q {
            Some(map) => Some(assemble(map, &mut outputs)?),
            None => None,
        };
        Ok(TiledQr {
            q,
            r: assemble(&plan.r, &mut outputs)?,
            report,
            tasks: plan.dag.num_tasks(),
        })
    }

    /// `Qᵀ·B` for the `Q` of `A = Q·R`, with `R`, in one graph (`Q` is never
    /// formed): the first `n` rows of `Qᵀ·B` and `R` solve least-squares
    /// problems; the rest hold the residual's components.
    pub fn qr_apply_transpose(
        &self,
        a: &BlockMatrix,
        b: &BlockMatrix,
        options: &RunOptions<'_>,
    ) -> Result<(TiledQr, BlockMatrix), Error> {
        let plan = qr_plan(a.layout(), false, Some(b.layout()))?;
        a.check_finite("A")?;
        b.check_finite("B")?;
        let mut inputs = tiles_of(&plan.a, a);
        if let Some(map) = &plan.b {
            inputs.extend(tiles_of(map, b));
        }
        let (mut outputs, report) = self.run_graph(&plan.dag, inputs, options)?;
        let qtb = match &plan.qtb {
            Some(map) => assemble(map, &mut outputs)?,
            None => b.clone(),
        };
        Ok((
            TiledQr {
                q: None,
                r: assemble(&plan.r, &mut outputs)?,
                report,
                tasks: plan.dag.num_tasks(),
            },
            qtb,
        ))
    }

    /// NaN and ∞ in the input of a TSQR: the tree's leaves reject them with
    /// the same error as a check before the run (`TileOp::Qr`'s `input_row`),
    /// which saves a pass over `A` (28 ms for 256 MiB); runs on remote
    /// executors still check here, before anything is sent.
    fn check_tall_input(&self, a: &BlockMatrix) -> Result<(), Error> {
        if self.is_remote() {
            a.check_finite("A")?;
        }
        Ok(())
    }

    /// The exact SVD of a tall-skinny `A` (one column of tiles): TSQR, the
    /// SVD of `R`, and `U = Q·U_R` down the same tree. Singular values only
    /// unless `vectors`.
    pub fn svd_tall(
        &self,
        a: &BlockMatrix,
        tree: impl Into<Tree>,
        vectors: bool,
        options: &RunOptions<'_>,
    ) -> Result<SvdFactors, Error> {
        let plan = tall_svd_plan(a.layout(), tree, vectors)?;
        self.check_tall_input(a)?;
        let inputs = tiles_of(&plan.a, a);
        self.run_svd(&plan, inputs, plan.k, options)
    }

    /// A randomized truncated SVD of any tiled `A`: `settings.rank` triplets
    /// from a sketch with a random test matrix drawn from `seed`.
    pub fn randomized_svd(
        &self,
        a: &BlockMatrix,
        settings: RandomizedSvd,
        vectors: bool,
        seed: u64,
        options: &RunOptions<'_>,
    ) -> Result<SvdFactors, Error> {
        let plan = randomized_svd_plan(a.layout(), settings, vectors)?;
        a.check_finite("A")?;
        let mut inputs = tiles_of(&plan.a, a);
        if let Some(map) = &plan.omega {
            let layout = map.layout;
            let omega = BlockMatrix::random(
                layout.rows(),
                layout.cols(),
                layout.tile_rows(),
                layout.tile_cols(),
                seed,
            )?;
            inputs.extend(tiles_of(map, &omega));
        }
        self.run_svd(&plan, inputs, settings.rank, options)
    }

    /// The full SVD of `A` in square tiles through its tile reduction to band
    /// form (bandwidth: the tile size), then the band's SVD in one task:
    /// values by bulge chasing to bidiagonal form, vectors by a dense SVD of
    /// the band and the reduction's reflectors applied to its vectors. A wide
    /// `A` is factored as `Aᵀ = V·Σ·Uᵀ`.
    pub fn svd_full(
        &self,
        a: &BlockMatrix,
        vectors: bool,
        options: &RunOptions<'_>,
    ) -> Result<SvdFactors, Error> {
        self.svd_full_with(a, Panel::default(), vectors, options)
    }

    /// [`svd_full`](Self::svd_full) with the QR and LQ panels reduced as
    /// `panel` says.
    pub fn svd_full_with(
        &self,
        a: &BlockMatrix,
        panel: Panel,
        vectors: bool,
        options: &RunOptions<'_>,
    ) -> Result<SvdFactors, Error> {
        let (m, n) = a.shape();
        if m >= n {
            let plan = full_svd_plan_with(a.layout(), panel, vectors)?;
            a.check_finite("A")?;
            return self.run_svd(&plan, tiles_of(&plan.a, a), plan.k, options);
        }
        let layout = a.layout();
        let flipped = layout.transposed();
        let plan = full_svd_plan_with(flipped, panel, vectors)?;
        a.check_finite("A")?;
        let at = BlockMatrix::from_fn(flipped, |i, j, _| tile::to_column_major(a.tile(j, i).t()));
        let f = self.run_svd(&plan, tiles_of(&plan.a, &at), plan.k, options)?;
        // Aᵀ = U'·Σ·V'ᵀ gives A = V'·Σ·U'ᵀ.
        let u = match f.vt {
            Some(vt) => Some(BlockMatrix::from_array(
                vt.t(),
                layout.tile_rows(),
                layout.tile_rows(),
            )?),
            None => None,
        };
        let vt = f.u.map(|u| tile::to_column_major(u.to_array().t()));
        Ok(SvdFactors { u, vt, ..f })
    }

    fn run_svd(
        &self,
        plan: &SvdPlan,
        inputs: Vec<(DataId, Arc<Tile>)>,
        keep: usize,
        options: &RunOptions<'_>,
    ) -> Result<SvdFactors, Error> {
        let (mut outputs, report) = self.run_graph(&plan.dag, inputs, options)?;
        let mut s: Vec<f64> = take(&mut outputs, plan.s)?.iter().copied().collect();
        let keep = keep.min(s.len());
        s.truncate(keep);
        let u = match &plan.u {
            Some(map) => Some(first_columns(assemble(map, &mut outputs)?, keep)?),
            None => None,
        };
        let vt = match &plan.v {
            Some(V::Transposed(item)) => {
                Some(take(&mut outputs, *item)?.slice(s![..keep, ..]).to_owned())
            }
            Some(V::Tiles(map)) => {
                let v = assemble(map, &mut outputs)?.to_array();
                Some(tile::to_column_major(v.slice(s![.., ..keep]).t()))
            }
            None => None,
        };
        Ok(SvdFactors {
            u,
            s,
            vt,
            report,
            tasks: plan.dag.num_tasks(),
        })
    }

    /// Solves `op(T)·X = B` with `T` triangular (only `triangle` is read),
    /// square in square tiles, and `B` in the same row tiles.
    pub fn solve_triangular(
        &self,
        t: &BlockMatrix,
        triangle: Triangle,
        trans: Transpose,
        b: &BlockMatrix,
        options: &RunOptions<'_>,
    ) -> Result<Solved, Error> {
        let plan = triangular_solve_plan(t.layout(), triangle, trans, b.layout())?;
        b.check_finite("B")?;
        t.check_finite_triangle("T", triangle)?;
        self.solve(plan, t, b, options)
    }

    /// Solves `A·X = B` for a symmetric positive-definite `A` (lower triangle
    /// read) by Cholesky and two triangular solves in one graph.
    pub fn cholesky_solve(
        &self,
        a: &BlockMatrix,
        b: &BlockMatrix,
        options: &RunOptions<'_>,
    ) -> Result<Solved, Error> {
        let plan = cholesky_solve_plan(a.layout(), b.layout())?;
        a.check_finite_lower("A")?;
        b.check_finite("B")?;
        self.solve(plan, a, b, options)
    }

    fn solve(
        &self,
        plan: wukong_linalg::SolvePlan,
        a: &BlockMatrix,
        b: &BlockMatrix,
        options: &RunOptions<'_>,
    ) -> Result<Solved, Error> {
        let mut inputs = tiles_of(&plan.a, a);
        if let Some(map) = &plan.b {
            inputs.extend(tiles_of(map, b));
        }
        let (mut outputs, report) = self.run_graph(&plan.dag, inputs, options)?;
        Ok(Solved {
            x: assemble(&plan.x, &mut outputs)?,
            report,
            tasks: plan.dag.num_tasks(),
        })
    }

    /// Least squares `min ‖A·X − B‖` for a tall `A` of full column rank,
    /// through the TSQR of `[A B]` (`Q` is never formed). `A` and `B` must
    /// have the same row tiles; their column tiling does not matter. A
    /// rank-deficient `A` fails with [`LinalgError::RankDeficient`].
    pub fn lstsq(
        &self,
        a: &BlockMatrix,
        b: &BlockMatrix,
        tree: impl Into<Tree>,
        options: &RunOptions<'_>,
    ) -> Result<Solved, Error> {
        let (la, lb) = (a.layout(), b.layout());
        if la.rows() != lb.rows() || la.tile_rows() != lb.tile_rows() {
            return Err(LinalgError::ShapeMismatch {
                operation: "least squares",
                detail: format!(
                    "A is {}×{} in {}-row tiles and B is {}×{} in {}-row tiles: they need the same rows and row tiles",
                    la.rows(),
                    la.cols(),
                    la.tile_rows(),
                    lb.rows(),
                    lb.cols(),
                    lb.tile_rows()
                ),
            }
            .into());
        }
        a.check_finite("A")?;
        b.check_finite("B")?;
        let (n, width) = (la.cols(), la.cols() + lb.cols());
        let joined = TileLayout::new(la.rows(), width, la.tile_rows(), width)?;
        let ab = BlockMatrix::from_fn(joined, |i, _, (rows, _)| {
            let mut row = tile::zeros(rows, width);
            for (matrix, offset) in [(a, 0), (b, n)] {
                let layout = matrix.layout();
                for j in 0..layout.grid().1 {
                    let c0 = offset + layout.col_offset(j);
                    let part = matrix.tile(i, j);
                    row.slice_mut(s![.., c0..c0 + part.ncols()]).assign(&**part);
                }
            }
            row
        });
        let plan = lstsq_plan(joined, n, tree)?;
        let (mut outputs, report) = self.run_graph(&plan.dag, tiles_of(&plan.a, &ab), options)?;
        Ok(Solved {
            x: assemble(&plan.x, &mut outputs)?,
            report,
            tasks: plan.dag.num_tasks(),
        })
    }
}
