//! One benchmark job: take inputs (seeded random matrices, or `.npy` files),
//! run the tiled algorithm, optionally time the same backend's whole-matrix
//! call on the same input in the same run, check the result, and write it.
//! The `wukong run` command and `wukong-bench` both use it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use wukong_executor::{Progress, RunOptions, RunReport, Scheduler};
use wukong_linalg::npy::{self, NpyMatrix, Overwrite, Staged};
use wukong_linalg::{
    BackendKind, BlockMatrix, LinalgError, TileLayout, cholesky_plan, flops, gemm_plan, tile,
};

use crate::{Error, Runtime};

mod check;
mod estimate;
mod factor;
pub use estimate::MemoryEstimate;
pub use factor::{Params, SolveKind, SvdKind};

/// `text` as one of `T`'s command-line names; else an error naming `what`
/// was asked for and the `expected` names.
fn parse_name<T: clap::ValueEnum>(
    text: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<T, wukong_dag::UnknownName> {
    T::from_str(text, false).map_err(|_| wukong_dag::UnknownName {
        what,
        given: text.to_owned(),
        expected,
    })
}

/// The algorithms a workload can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// `C = A·B` with `A` m×k and `B` k×n.
    Gemm,
    /// `A = L·Lᵀ` of an n×n symmetric positive-definite matrix.
    Cholesky,
    /// `A = Q·R` of a tall-skinny m×n matrix in one column of tiles.
    Tsqr,
    /// `A = Q·R` of a general m×n matrix (m ≥ n) in square tiles.
    Qr,
    /// Singular values (and vectors) of an m×n matrix: tall-skinny, randomized or full.
    Svd,
    /// A linear system or least-squares problem with several right-hand sides.
    Solve,
}

impl Algorithm {
    /// The name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gemm => "gemm",
            Algorithm::Cholesky => "cholesky",
            Algorithm::Tsqr => "tsqr",
            Algorithm::Qr => "qr",
            Algorithm::Svd => "svd",
            Algorithm::Solve => "solve",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Columns of the result (GEMM), order of the matrix (Cholesky,
    /// triangular and Cholesky solves), columns of `A` (TSQR, SVD, least squares).
    pub n: usize,
    /// Rows of `A` (GEMM, TSQR, SVD, least squares; defaults to `n`).
    pub m: Option<usize>,
    /// Inner dimension (GEMM; defaults to `n`).
    pub k: Option<usize>,
    /// Tile size (square tiles); rows per tile for the tall-skinny
    /// algorithms, whose tiles span all columns.
    pub tile: usize,
    /// Executor threads, also used by the whole-matrix reference.
    pub threads: usize,
    /// Kernel backend of both the tiled run and the reference.
    pub backend: BackendKind,
    /// Seed of the random inputs.
    pub seed: u64,
    /// How many times to time the tiled run and the reference (alternating);
    /// the report gives medians.
    pub repeat: usize,
    /// Scheduler of the tiled run.
    pub scheduler: Scheduler,
    /// `None` for the in-memory store, or a Redis URL (feature `redis`).
    pub redis: Option<String>,
    /// Executors in worker processes or Lambda functions, sharing the Redis
    /// at `redis`; `None` runs them on threads of this process.
    pub remote: Option<Remote>,
    /// Settings of the TSQR, SVD and solve workloads.
    pub params: Params,
    /// Where the operands come from.
    pub inputs: Inputs,
    /// Where the results are written as `.npy` files (`None`: not written).
    pub output: Option<Output>,
    /// Time the whole-matrix reference call: `None` does for generated
    /// inputs and does not for files (whose matrix may not fit twice).
    pub reference: Option<bool>,
    /// Compute the residual of the result (with the reference's whole
    /// matrices when it runs, else in tiles by the runtime).
    pub check: bool,
    /// Refuse to start a run whose estimated peak memory exceeds the memory
    /// available (the estimate is a model: turn this off to run anyway).
    pub memory_check: bool,
}

/// Where a workload's operands come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Inputs {
    /// Seeded random matrices, generated tile by tile ([`Workload::seed`]).
    #[default]
    Generated,
    /// `.npy` files (2-D `float64`, C or Fortran order; `float32` is
    /// converted): `a` the matrix; `b` the second factor of GEMM or the
    /// right-hand sides of a solve. The shape comes from the files.
    Files {
        /// The matrix `A`.
        a: PathBuf,
        /// `B`, where the algorithm takes one.
        b: Option<PathBuf>,
    },
}

/// Where and how results are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The directory (created if missing) that receives `C.npy`, `L.npy`,
    /// `Q.npy`, `R.npy`, `U.npy`, `s.npy`, `Vt.npy` or `X.npy`.
    pub dir: PathBuf,
    /// Whether existing files of those names may be replaced.
    pub overwrite: Overwrite,
}

/// Where executors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Threads of this process (the default).
    Local,
    /// `wukong worker` processes taking invocations from a Redis queue.
    Processes,
    /// AWS Lambda functions (`wukong-lambda`), invoked asynchronously.
    Lambda,
}

/// Settings of a run with remote executors.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Processes or Lambda.
    pub mode: Mode,
    /// Process mode: worker processes this run starts and stops (0: use
    /// workers started elsewhere against the same Redis).
    pub workers: usize,
    /// The `wukong` executable the workers run (`wukong worker`); default:
    /// this executable.
    pub worker_exe: Option<std::path::PathBuf>,
    /// Process mode: the queue workers take invocations from.
    pub queue: String,
    /// Lambda mode: the function.
    pub function: String,
    /// Lambda mode: a Lambda API endpoint other than AWS's.
    pub lambda_endpoint: Option<String>,
    /// Lambda mode: the region (else the standard chain's).
    pub region: Option<String>,
    /// Lambda mode: executors that may run at once.
    pub concurrency: u32,
    /// Lease length of each executor.
    pub lease: std::time::Duration,
    /// Tiles in this S3 bucket instead of Redis.
    pub s3_bucket: Option<String>,
    /// A custom S3 endpoint.
    pub s3_endpoint: Option<String>,
    /// Function size for the cost estimate, MB.
    pub memory_mb: u32,
}

impl Remote {
    /// Process mode with `workers` workers started by the run.
    pub fn processes(workers: usize) -> Self {
        Self {
            mode: Mode::Processes,
            workers,
            worker_exe: None,
            queue: "wukong".into(),
            function: "wukong-lambda".into(),
            lambda_endpoint: None,
            region: None,
            concurrency: 1000,
            lease: std::time::Duration::from_secs(10),
            s3_bucket: None,
            s3_endpoint: None,
            memory_mb: 2048,
        }
    }

    /// Lambda mode with `function`.
    pub fn lambda(function: impl Into<String>) -> Self {
        Self {
            mode: Mode::Lambda,
            function: function.into(),
            ..Self::processes(0)
        }
    }
}

/// What a workload measured. Field names are part of the CLI's JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    /// `gemm`, `cholesky`, `tsqr`, `qr`, `svd` or `solve`.
    pub algorithm: Algorithm,
    /// See [`Workload::n`].
    pub n: usize,
    /// Rows of `A` (GEMM, TSQR, SVD, least squares), else `n`.
    pub m: usize,
    /// Inner dimension (GEMM), right-hand sides (solve), else `n`.
    pub k: usize,
    /// Tile size.
    pub tile: usize,
    /// Executor threads.
    pub threads: usize,
    /// `faer` or `openblas`.
    pub backend: &'static str,
    /// Scheduler of the tiled run: `wukong`, `numpywren` or `shared`.
    pub scheduler: &'static str,
    /// Where the executors ran: local, processes or lambda.
    pub mode: Mode,
    /// The store: `memory`, or the Redis endpoint without password.
    pub store: String,
    /// Tasks in the graph.
    pub tasks: usize,
    /// Timed runs of each side; times are medians over them.
    pub repeat: usize,
    /// Wall time of the tiled run (graph construction and input checks included).
    pub seconds: f64,
    /// Useful floating-point operations per second of the tiled run, in 10⁹.
    pub gflops: f64,
    /// Wall time of the whole-matrix library call on the same input (when
    /// it ran).
    pub reference_seconds: Option<f64>,
    /// Its GFLOP/s.
    pub reference_gflops: Option<f64>,
    /// `gflops / reference_gflops`: above 1 the tiled run is faster.
    pub ratio: Option<f64>,
    /// Relative Frobenius residual of the tiled result: ‖A−LLᵀ‖/‖A‖ (Cholesky),
    /// ‖C−AB‖/(‖A‖‖B‖) with AB from the reference call (GEMM), ‖A−QR‖/‖A‖
    /// (TSQR with Q; without, ‖AᵀA−RᵀR‖/‖A‖²), the largest singular-value
    /// difference to the reference relative to σ₁ (SVD; with vectors also
    /// ‖A−UΣVᵀ‖/‖A‖ if larger), ‖AX−B‖/(‖A‖‖X‖) (triangular and Cholesky
    /// solves), ‖X−X_ref‖/‖X_ref‖ (least squares). Without the reference,
    /// GEMM's product is recomputed in tiles; the SVD's values are checked by
    /// |‖A‖²−Σσ²|/‖A‖² (randomized: √(1−Σσ²/‖A‖²), the truncation's error);
    /// least squares by ‖Aᵀ(AX−B)‖/(‖A‖(‖A‖‖X‖+‖B‖)). `None` when the check
    /// was turned off.
    pub residual: Option<f64>,
    /// The same residual for the reference's own result (Cholesky only).
    pub reference_residual: Option<f64>,
    /// Fraction of executor-thread time spent in kernels.
    pub utilization: f64,
    /// Seed of the inputs.
    pub seed: u64,
    /// Executors started in the last run.
    pub executors: usize,
    /// Executors started by another executor or the driver (last run).
    pub invocations: u64,
    /// Task inputs found in an executor's local cache (last run).
    pub cache_hits: u64,
    /// Bytes of those inputs.
    pub cache_hit_bytes: u64,
    /// Objects executors read from the store (last run).
    pub store_reads: u64,
    /// Bytes executors read from the store (last run).
    pub store_bytes_read: u64,
    /// Objects executors wrote to the store (last run).
    pub store_writes: u64,
    /// Bytes executors wrote to the store (last run).
    pub store_bytes_written: u64,
    /// Bytes of the inputs put into the store before the run (last run).
    pub staged_bytes: u64,
    /// Estimated AWS bill of the last tiled run on Lambda with S3.
    pub cost: Option<wukong_executor::CostEstimate>,
    /// Settings of a TSQR, SVD or solve workload.
    pub params: Option<Params>,
    /// The input files (none for generated inputs).
    pub inputs: Vec<PathBuf>,
    /// The result files written.
    pub outputs: Vec<PathBuf>,
    /// Estimated peak memory of the run, bytes (checked before it started).
    pub memory_estimate_bytes: u64,
    /// Memory available when it started, bytes (where it can be read).
    pub memory_available_bytes: Option<u64>,
    /// Largest resident set of this process so far, bytes (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// What the user should know: conversions of the input, skipped steps.
    pub notes: Vec<String>,
    /// The last tiled run's full report (timeline, per-executor records).
    #[serde(skip)]
    pub run: RunReport,
}

/// Which operand of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operand {
    /// `A`.
    A,
    /// `B`: GEMM's second factor, or the right-hand sides of a solve.
    B,
}

impl Operand {
    fn name(self) -> &'static str {
        match self {
            Operand::A => "A",
            Operand::B => "B",
        }
    }
}

/// A workload ready to run: its shape resolved from its files, its memory
/// and its outputs checked.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The workload with `n`, `m`, `k` and the right-hand sides set from its
    /// input files.
    pub workload: Workload,
    /// Estimated peak memory.
    pub memory: MemoryEstimate,
    /// Memory available when it was checked.
    pub available: Option<crate::memory::Available>,
    /// What the user should know before it runs (conversions).
    pub notes: Vec<String>,
}

impl Prepared {
    /// Runs it. `progress` sees each finished task of the tiled run.
    pub fn run(
        &self,
        progress: Option<&(dyn Fn(Progress) + Sync)>,
    ) -> Result<WorkloadReport, Error> {
        let mut report = self.workload.run_prepared(progress)?;
        report.memory_estimate_bytes = self.memory.total();
        report.memory_available_bytes = self.available.map(|a| a.bytes);
        report.peak_rss_bytes = crate::memory::peak_resident();
        let mut notes = self.notes.clone();
        notes.append(&mut report.notes);
        report.notes = notes;
        Ok(report)
    }
}

impl Workload {
    /// `algorithm` on seeded random `n`-sized input (see the fields for what
    /// `n` means), with the defaults of `wukong run`: 512 tiles, one thread
    /// per core, faer kernels, the Wukong scheduler on the in-memory store,
    /// seed 42, one timed run with the whole-matrix reference, the residual
    /// checked, nothing written.
    pub fn new(algorithm: Algorithm, n: usize) -> Self {
        Self {
            algorithm,
            n,
            m: None,
            k: None,
            tile: 512,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            backend: BackendKind::Faer,
            seed: 42,
            repeat: 1,
            scheduler: Scheduler::Wukong,
            redis: None,
            remote: None,
            params: Params::default(),
            inputs: Inputs::Generated,
            output: None,
            reference: None,
            check: true,
            memory_check: true,
        }
    }

    /// The task graph the tiled run executes.
    pub fn graph(&self) -> Result<wukong_dag::Dag<wukong_linalg::TileOp>, Error> {
        let square = |rows, cols| TileLayout::square_tiles(rows, cols, self.tile);
        let (m, k) = (self.m.unwrap_or(self.n), self.k.unwrap_or(self.n));
        Ok(match self.algorithm {
            Algorithm::Gemm => gemm_plan(square(m, k)?, square(k, self.n)?, 1.0, None)?.dag,
            Algorithm::Cholesky => cholesky_plan(square(self.n, self.n)?)?.dag,
            Algorithm::Tsqr | Algorithm::Qr | Algorithm::Svd | Algorithm::Solve => {
                self.factor_graph()?
            }
        })
    }

    /// Whether the whole-matrix reference runs.
    pub fn uses_reference(&self) -> bool {
        self.reference
            .unwrap_or(matches!(self.inputs, Inputs::Generated))
    }

    fn file(&self, operand: Operand) -> Option<&Path> {
        match (&self.inputs, operand) {
            (Inputs::Generated, _) => None,
            (Inputs::Files { a, .. }, Operand::A) => Some(a),
            (Inputs::Files { b, .. }, Operand::B) => b.as_deref(),
        }
    }

    /// Whether the algorithm takes a `B`.
    fn takes_b(&self) -> bool {
        self.algorithm == Algorithm::Gemm || self.algorithm == Algorithm::Solve
    }

    /// Resolves the shape from the input files, checks that it fits the
    /// algorithm, that the run fits in memory and that its results can be
    /// written, all before anything large is allocated.
    pub fn prepare(&self) -> Result<Prepared, Error> {
        let mut workload = self.clone();
        let mut notes = Vec::new();
        if let Inputs::Files { a, b } = &self.inputs {
            let a_file = NpyMatrix::open(a)?;
            let b_file = match (b, self.takes_b()) {
                (Some(b), true) => Some(match self.algorithm {
                    Algorithm::Solve => NpyMatrix::open_vector_or_matrix(b)?,
                    _ => NpyMatrix::open(b)?,
                }),
                (Some(b), false) => {
                    return Err(usage(format!(
                        "{} takes one matrix (--a), but --b {} was given",
                        self.algorithm.name(),
                        b.display()
                    )));
                }
                (None, true) => {
                    return Err(usage(format!(
                        "{} with --a also needs --b: {}",
                        self.algorithm.name(),
                        if self.algorithm == Algorithm::Gemm {
                            "the second factor B of C = A·B"
                        } else {
                            "the right-hand sides B of A·X = B"
                        }
                    )));
                }
                (None, false) => None,
            };
            for file in std::iter::once(&a_file).chain(&b_file) {
                if file.element().is_converted() {
                    notes.push(format!(
                        "{} holds {}: its values are converted to float64",
                        file.path().display(),
                        file.element().name()
                    ));
                }
            }
            workload.fit_shape(&a_file, b_file.as_ref())?;
        }
        let memory = workload.memory_estimate();
        let available = crate::memory::available();
        if let Some(available) = available.filter(|_| self.memory_check) {
            if memory.total() > available.bytes {
                return Err(Error::OutOfMemory {
                    needed: memory.total(),
                    breakdown: memory.breakdown(),
                    available: available.bytes,
                    limit: available.source,
                    advice: workload.memory_advice(&memory),
                });
            }
        }
        workload.check_outputs()?;
        Ok(Prepared {
            workload,
            memory,
            available,
            notes,
        })
    }

    /// What to change when a run does not fit.
    fn memory_advice(&self, memory: &MemoryEstimate) -> String {
        let mut advice = vec![match self.inputs {
            Inputs::Generated => "choose a smaller --n (or --m, --k)".to_owned(),
            Inputs::Files { .. } => "use a smaller matrix".to_owned(),
        }];
        if memory.reference > 0 {
            advice.push("run without the whole-matrix reference (--no-reference)".into());
        }
        if memory.check > 0 {
            advice.push("skip the residual check (--no-check)".into());
        }
        let last = advice.pop().unwrap_or_default();
        let mut text = advice.join(", ");
        if !text.is_empty() {
            text.push_str(" or ");
        }
        text.push_str(&last);
        text.push_str("; a matrix larger than memory needs tiles kept in a store on disk, which this version does not offer yet (--no-memory-check runs anyway)");
        text
    }

    /// Sets `n`, `m`, `k` and the right-hand sides from the files, and checks
    /// that their shapes fit the algorithm.
    fn fit_shape(&mut self, a: &NpyMatrix, b: Option<&NpyMatrix>) -> Result<(), Error> {
        let name = |f: &NpyMatrix| f.path().display().to_string();
        let (rows, cols) = a.shape();
        let shape_error = |detail: String| {
            Error::Linalg(LinalgError::ShapeMismatch {
                operation: self.algorithm.name(),
                detail,
            })
        };
        let square = |what: &str| {
            if rows == cols {
                Ok(())
            } else {
                Err(shape_error(format!(
                    "{} is {rows}×{cols}, but {what} needs a square matrix",
                    name(a)
                )))
            }
        };
        let tall = |what: &str, hint: &str| {
            if rows >= cols {
                Ok(())
            } else {
                Err(shape_error(format!(
                    "{} is {rows}×{cols}, wider than tall, but {what} needs at least as many rows as columns{hint}",
                    name(a)
                )))
            }
        };
        let rhs_rows = |b: &NpyMatrix| {
            let (b_rows, b_cols) = b.shape();
            if b_rows == rows {
                Ok(b_cols)
            } else {
                Err(shape_error(format!(
                    "{} is {rows}×{cols} but {} is {b_rows}×{b_cols}: B needs as many rows as A ({rows})",
                    name(a),
                    name(b)
                )))
            }
        };
        self.m = None;
        self.k = None;
        match self.algorithm {
            Algorithm::Gemm => {
                let b = b.ok_or(LinalgError::ZeroSize { what: "B" })?;
                let (b_rows, b_cols) = b.shape();
                if b_rows != cols {
                    return Err(shape_error(format!(
                        "{} is {rows}×{cols} and {} is {b_rows}×{b_cols}: A·B needs B to have as many rows as A has columns ({cols})",
                        name(a),
                        name(b)
                    )));
                }
                (self.m, self.k, self.n) = (Some(rows), Some(cols), b_cols);
            }
            Algorithm::Cholesky => {
                square("a Cholesky factorization")?;
                self.n = rows;
            }
            Algorithm::Tsqr | Algorithm::Qr => {
                tall("QR", " (factor the transpose, or use svd --svd full)")?;
                (self.m, self.n) = (Some(rows), cols);
            }
            Algorithm::Svd => {
                if self.params.svd == SvdKind::Tall {
                    tall(
                        "the tall-skinny SVD",
                        " (use --svd full or --svd randomized for a wide matrix)",
                    )?;
                }
                (self.m, self.n) = (Some(rows), cols);
            }
            Algorithm::Solve => {
                let b = b.ok_or(LinalgError::ZeroSize { what: "B" })?;
                match self.params.solve {
                    SolveKind::Triangular => square("a triangular solve")?,
                    SolveKind::Cholesky => square("a Cholesky solve")?,
                    SolveKind::Lstsq => tall("least squares", "")?,
                }
                self.params.rhs = rhs_rows(b)?;
                self.n = cols;
                if self.params.solve == SolveKind::Lstsq {
                    self.m = Some(rows);
                }
            }
        }
        Ok(())
    }

    /// The result files this workload writes.
    pub fn output_names(&self) -> Vec<&'static str> {
        let p = &self.params;
        match self.algorithm {
            Algorithm::Gemm => vec!["C.npy"],
            Algorithm::Cholesky => vec!["L.npy"],
            Algorithm::Tsqr | Algorithm::Qr if p.explicit_q => vec!["Q.npy", "R.npy"],
            Algorithm::Tsqr | Algorithm::Qr => vec!["R.npy"],
            Algorithm::Svd if p.vectors => vec!["U.npy", "s.npy", "Vt.npy"],
            Algorithm::Svd => vec!["s.npy"],
            Algorithm::Solve => vec!["X.npy"],
        }
    }

    /// Creates the output directory, checks that it takes files and that
    /// no result would replace a file unless that is allowed.
    fn check_outputs(&self) -> Result<(), Error> {
        let Some(output) = &self.output else {
            return Ok(());
        };
        let cannot = |detail: String| Error::Output {
            path: output.dir.clone(),
            detail,
        };
        if output.dir.exists() && !output.dir.is_dir() {
            return Err(cannot("it exists and is not a directory".into()));
        }
        std::fs::create_dir_all(&output.dir)
            .map_err(|e| cannot(format!("cannot create it: {e}")))?;
        for name in self.output_names() {
            wukong_linalg::npy::check_writable(&output.dir.join(name), output.overwrite)?;
        }
        // A probe file shows now, not after the run, that files can be made there.
        let probe = output
            .dir
            .join(format!(".wukong-probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .map_err(|e| cannot(format!("cannot write files in it: {e}")))?;
        std::fs::remove_file(&probe).map_err(|e| {
            cannot(format!(
                "cannot remove the probe file {}: {e}",
                probe.display()
            ))
        })
    }

    /// Stages result `name` with `stage` when results are kept; staged
    /// results become visible together, in [`finish`](Self::finish), once the
    /// run and its check have succeeded.
    fn save_with(
        &self,
        name: &str,
        staged: &mut Vec<Staged>,
        stage: impl FnOnce(&Path) -> Result<Staged, LinalgError>,
    ) -> Result<(), Error> {
        if let Some(output) = &self.output {
            staged.push(stage(&output.dir.join(name))?);
        }
        Ok(())
    }

    /// Stages `matrix` as result `name` when results are kept.
    pub(crate) fn save(
        &self,
        name: &str,
        matrix: &BlockMatrix,
        staged: &mut Vec<Staged>,
    ) -> Result<(), Error> {
        self.save_with(name, staged, |path| npy::stage_matrix(path, matrix))
    }

    /// Stages a whole matrix as result `name` when results are kept.
    pub(crate) fn save_array(
        &self,
        name: &str,
        matrix: &ndarray::Array2<f64>,
        staged: &mut Vec<Staged>,
    ) -> Result<(), Error> {
        self.save_with(name, staged, |path| npy::stage_array(path, matrix.view()))
    }

    /// Stages `values` as the 1-D result `name` when results are kept.
    pub(crate) fn save_vector(
        &self,
        name: &str,
        values: &[f64],
        staged: &mut Vec<Staged>,
    ) -> Result<(), Error> {
        self.save_with(name, staged, |path| npy::stage_vector(path, values))
    }

    /// Operand `which` in `tile_rows × tile_cols` tiles, read from its file
    /// (`None` for generated inputs).
    pub(crate) fn read(
        &self,
        which: Operand,
        tile_rows: usize,
        tile_cols: usize,
    ) -> Result<Option<BlockMatrix>, Error> {
        let Some(path) = self.file(which) else {
            return Ok(None);
        };
        let file = match which {
            Operand::B => NpyMatrix::open_vector_or_matrix(path)?,
            Operand::A => NpyMatrix::open(path)?,
        };
        Ok(Some(file.read_tiles(tile_rows, tile_cols)?))
    }

    /// Operand `which` in `tile_rows × tile_cols` tiles: read from its file,
    /// or made by `generate`.
    pub(crate) fn operand(
        &self,
        which: Operand,
        tile_rows: usize,
        tile_cols: usize,
        generate: impl FnOnce() -> Result<BlockMatrix, LinalgError>,
    ) -> Result<BlockMatrix, Error> {
        match self.read(which, tile_rows, tile_cols)? {
            Some(matrix) => Ok(matrix),
            None => Ok(generate()?),
        }
    }

    /// Names the input file in an error the math found in it (not positive
    /// definite, rank deficient, not symmetric).
    pub(crate) fn blame(&self, which: Operand, error: Error) -> Error {
        match (self.file(which), error) {
            (Some(path), Error::Linalg(source)) if !matches!(source, LinalgError::Npy { .. }) => {
                Error::InFile {
                    path: path.to_owned(),
                    operand: which.name(),
                    problem: Box::new(source),
                }
            }
            (_, error) => error,
        }
    }

    /// Runs the workload (see [`prepare`](Self::prepare), which it calls
    /// first). `progress` sees each finished task of the tiled run.
    pub fn run(
        &self,
        progress: Option<&(dyn Fn(Progress) + Sync)>,
    ) -> Result<WorkloadReport, Error> {
        self.prepare()?.run(progress)
    }

    fn run_prepared(
        &self,
        progress: Option<&(dyn Fn(Progress) + Sync)>,
    ) -> Result<WorkloadReport, Error> {
        let mut runtime = Runtime::new()
            .with_threads(self.threads)
            .with_scheduler(self.scheduler)
            .with_backend(self.backend)?;
        let mut _workers = None;
        match (&self.remote, &self.redis) {
            (Some(remote), Some(url)) if remote.mode != Mode::Local => {
                let (remote_runtime, workers) = with_remote(runtime, url, remote)?;
                runtime = remote_runtime;
                _workers = workers;
            }
            (Some(remote), None) if remote.mode != Mode::Local => {
                return Err(Error::Usage {
                    detail: "process and Lambda modes share state through Redis: give its URL (--store redis://…)".into(),
                });
            }
            (_, Some(url)) => runtime = with_redis(runtime, url)?,
            (_, None) => {}
        }
        let options = RunOptions { progress };
        let m = self.m.unwrap_or(self.n);
        let k = self.k.unwrap_or(self.n);
        match self.algorithm {
            Algorithm::Gemm => self.gemm(&runtime, &options, m, k),
            Algorithm::Cholesky => self.cholesky(&runtime, &options),
            Algorithm::Tsqr | Algorithm::Qr => self.tsqr(&runtime, &options),
            Algorithm::Svd => self.svd(&runtime, &options),
            Algorithm::Solve => self.solve(&runtime, &options),
        }
    }

    /// Makes the staged results visible together (after the run and its
    /// check succeeded) and builds the report.
    pub(crate) fn finish(
        &self,
        runtime: &Runtime,
        m: usize,
        k: usize,
        flops: f64,
        tasks: usize,
        mut timings: Timings,
    ) -> Result<WorkloadReport, Error> {
        let overwrite = self
            .output
            .as_ref()
            .map_or(Overwrite::Refuse, |o| o.overwrite);
        for staged in std::mem::take(&mut timings.staged) {
            timings.outputs.push(staged.commit(overwrite)?);
        }
        let seconds = median(&timings.tiled);
        let reference_seconds = (!timings.reference.is_empty()).then(|| median(&timings.reference));
        let gflops = flops / seconds / 1e9;
        let reference_gflops = reference_seconds.map(|s| flops / s / 1e9);
        let mut notes = Vec::new();
        if reference_seconds.is_none() {
            notes.push("no whole-matrix reference was timed (--reference runs it)".to_owned());
        }
        Ok(WorkloadReport {
            algorithm: self.algorithm,
            n: self.n,
            m,
            k,
            tile: self.tile,
            threads: self.threads,
            backend: self.backend.name(),
            scheduler: runtime.scheduler().name(),
            store: runtime.store_name().to_owned(),
            tasks,
            repeat: timings.tiled.len(),
            seconds,
            gflops,
            reference_seconds,
            reference_gflops,
            ratio: reference_gflops.map(|r| gflops / r),
            residual: timings.residual,
            reference_residual: timings.reference_residual,
            utilization: median(&timings.utilization),
            seed: self.seed,
            executors: timings.run.executors,
            invocations: timings.run.io.invocations,
            cache_hits: timings.run.io.cache_hits,
            cache_hit_bytes: timings.run.io.cache_hit_bytes,
            store_reads: timings.run.io.store_reads,
            store_bytes_read: timings.run.io.store_read_bytes,
            store_writes: timings.run.io.store_writes,
            store_bytes_written: timings.run.io.store_write_bytes,
            staged_bytes: timings.run.io.staged_bytes,
            mode: self.remote.as_ref().map_or(Mode::Local, |r| r.mode),
            params: match self.algorithm {
                Algorithm::Gemm | Algorithm::Cholesky => None,
                _ => Some(self.params.clone()),
            },
            inputs: match &self.inputs {
                Inputs::Generated => Vec::new(),
                Inputs::Files { a, b } => std::iter::once(a.clone()).chain(b.clone()).collect(),
            },
            outputs: timings.outputs,
            memory_estimate_bytes: 0,
            memory_available_bytes: None,
            peak_rss_bytes: None,
            notes,
            cost: timings.run.cost,
            run: timings.run,
        })
    }

    fn gemm(
        &self,
        runtime: &Runtime,
        options: &RunOptions<'_>,
        m: usize,
        k: usize,
    ) -> Result<WorkloadReport, Error> {
        let (n, t) = (self.n, self.tile);
        let a = self.operand(Operand::A, t, t, || {
            BlockMatrix::random(m, k, t, t, self.seed)
        })?;
        let b = self.operand(Operand::B, t, t, || {
            BlockMatrix::random(k, n, t, t, self.seed.wrapping_add(1))
        })?;
        let wholes = self.uses_reference().then(|| (a.to_array(), b.to_array()));
        let mut timings = Timings::default();
        let mut last = None;
        for _ in 0..self.repeat.max(1) {
            drop(last.take());
            let start = Instant::now();
            let computed = runtime.gemm_with(1.0, &a, &b, None, options)?;
            timings.tiled.push(start.elapsed().as_secs_f64());
            timings.utilization.push(computed.report.utilization());
            let expected = match &wholes {
                Some((a_whole, b_whole)) => {
                    let start = Instant::now();
                    let product = runtime.kernels().matmul_whole(
                        a_whole.view(),
                        b_whole.view(),
                        self.threads,
                    )?;
                    timings.reference.push(start.elapsed().as_secs_f64());
                    Some(product)
                }
                None => None,
            };
            last = Some((computed, expected));
        }
        let (computed, expected) = last.ok_or(LinalgError::ZeroSize { what: "repeat" })?;
        self.save("C.npy", &computed.matrix, &mut timings.staged)?;
        if self.check {
            timings.residual = Some(match expected {
                Some(reference) => {
                    let norms = a.frobenius_norm() * b.frobenius_norm();
                    let difference = &computed.matrix.to_array() - &reference;
                    tile::frobenius_norm(difference.view()) / norms
                }
                None => check::gemm(runtime, &a, &b, &computed.matrix)?,
            });
        }
        let tasks = computed.tasks;
        timings.run = computed.report;
        self.finish(runtime, m, k, flops::gemm(m, n, k), tasks, timings)
    }

    fn cholesky(
        &self,
        runtime: &Runtime,
        options: &RunOptions<'_>,
    ) -> Result<WorkloadReport, Error> {
        let (n, t) = (self.n, self.tile);
        // A file is read once and shared by every run (the first update of
        // each tile copies it); generated inputs are made afresh for each run,
        // which then factors them in place, as the reference does.
        let loaded = self.read(Operand::A, t, t)?;
        if let Some(a) = &loaded {
            a.check_symmetric("A", SYMMETRY_TOLERANCE)
                .map_err(|e| self.blame(Operand::A, e.into()))?;
        }
        let generate = || -> Result<BlockMatrix, Error> {
            match &loaded {
                Some(a) => Ok(a.clone()),
                None => Ok(BlockMatrix::random_spd(n, t, self.seed)?),
            }
        };
        let reference = self.uses_reference();
        let mut timings = Timings::default();
        let mut last = None;
        for _ in 0..self.repeat.max(1) {
            drop(last.take());
            let a = generate()?;
            let mut whole = reference.then(|| a.to_array());
            let start = Instant::now();
            let computed = runtime
                .cholesky_with(a, options)
                .map_err(|e| self.blame(Operand::A, e))?;
            timings.tiled.push(start.elapsed().as_secs_f64());
            timings.utilization.push(computed.report.utilization());
            if let Some(whole) = &mut whole {
                let start = Instant::now();
                runtime
                    .kernels()
                    .cholesky_whole(whole.view_mut(), self.threads)?;
                timings.reference.push(start.elapsed().as_secs_f64());
            }
            last = Some((computed, whole));
        }
        let (computed, reference_l) = last.ok_or(LinalgError::ZeroSize { what: "repeat" })?;
        self.save("L.npy", &computed.matrix, &mut timings.staged)?;
        if self.check {
            match reference_l {
                Some(reference_l) => {
                    let a = generate()?.to_array();
                    let residual = |l: &ndarray::Array2<f64>| -> Result<f64, LinalgError> {
                        let product =
                            runtime
                                .kernels()
                                .matmul_whole(l.view(), l.t(), self.threads)?;
                        Ok(tile::frobenius_norm((&a - &product).view())
                            / tile::frobenius_norm(a.view()))
                    };
                    timings.residual = Some(residual(&computed.matrix.to_array())?);
                    timings.reference_residual = Some(residual(&reference_l)?);
                }
                None => {
                    timings.residual =
                        Some(check::cholesky(runtime, &generate()?, &computed.matrix)?);
                }
            }
        }
        let tasks = computed.tasks;
        timings.run = computed.report;
        self.finish(runtime, n, n, flops::cholesky(n), tasks, timings)
    }
}

/// How far a symmetric input's mirror entries may differ, relative to
/// `√(|aᵢᵢ|·|aⱼⱼ|)`: rounding in how the user formed the matrix passes.
pub(crate) const SYMMETRY_TOLERANCE: f64 = 1e-10;

fn usage(detail: String) -> Error {
    Error::Usage { detail }
}

/// Measurements of repeated runs; each run times the tiled algorithm and then
/// the reference, so slow phases of a noisy machine hit both alike.
#[derive(Default)]
pub(crate) struct Timings {
    pub(crate) tiled: Vec<f64>,
    pub(crate) reference: Vec<f64>,
    pub(crate) utilization: Vec<f64>,
    pub(crate) residual: Option<f64>,
    pub(crate) reference_residual: Option<f64>,
    pub(crate) staged: Vec<Staged>,
    pub(crate) outputs: Vec<PathBuf>,
    pub(crate) run: RunReport,
}

#[cfg(feature = "redis")]
fn with_redis(runtime: Runtime, url: &str) -> Result<Runtime, Error> {
    runtime.with_redis(url)
}

#[cfg(not(feature = "redis"))]
fn with_redis(_: Runtime, _: &str) -> Result<Runtime, Error> {
    Err(Error::Usage {
        detail: "a Redis store: this build has no Redis support: rebuild with `--features redis`"
            .into(),
    })
}

/// Worker processes a run started; stopped when dropped.
#[cfg(feature = "redis")]
type Workers = crate::remote::WorkerProcesses;
#[cfg(not(feature = "redis"))]
type Workers = ();

#[cfg(feature = "redis")]
fn with_remote(
    runtime: Runtime,
    url: &str,
    remote: &Remote,
) -> Result<(Runtime, Option<Workers>), Error> {
    use crate::remote::{Connection, ObjectTarget, RemoteConfig, RemoteError, WorkerProcesses};
    let objects = ObjectTarget {
        s3_bucket: remote.s3_bucket.clone(),
        s3_endpoint: remote.s3_endpoint.clone(),
    };
    let connection = Connection::open(url, &objects)?;
    let mut workers = None;
    let (connection, mut config) = match remote.mode {
        #[cfg(feature = "lambda")]
        Mode::Lambda => {
            let client =
                connection
                    .runtime()
                    .block_on(wukong_executor::lambda::LambdaClient::connect(
                        remote.region.clone(),
                        remote.lambda_endpoint.clone(),
                    ));
            (
                connection.with_lambda(client),
                RemoteConfig::lambda(remote.function.clone(), remote.concurrency),
            )
        }
        #[cfg(not(feature = "lambda"))]
        Mode::Lambda => {
            return Err(RemoteError::Setup {
                what: "Lambda mode",
                detail: "this build has no Lambda support: rebuild with `--features lambda`".into(),
            }
            .into());
        }
        Mode::Processes | Mode::Local => {
            if remote.workers > 0 {
                let exe = match &remote.worker_exe {
                    Some(exe) => exe.clone(),
                    None => std::env::current_exe().map_err(|e| RemoteError::Setup {
                        what: "finding the wukong executable for the workers",
                        detail: e.to_string(),
                    })?,
                };
                workers = Some(WorkerProcesses::spawn(
                    &exe,
                    remote.workers,
                    url,
                    &objects,
                    &remote.queue,
                    &[],
                )?);
            }
            (connection, RemoteConfig::processes(remote.queue.clone()))
        }
    };
    config.lease = remote.lease;
    Ok((
        runtime
            .with_remote(connection, config)
            .with_lambda_memory(remote.memory_mb),
        workers,
    ))
}

#[cfg(not(feature = "redis"))]
fn with_remote(_: Runtime, url: &str, _: &Remote) -> Result<(Runtime, Option<Workers>), Error> {
    with_redis(Runtime::new(), url).map(|r| (r, None))
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}
