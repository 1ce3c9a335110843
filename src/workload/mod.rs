//! One benchmark job: generate inputs, run the tiled algorithm, time the same
//! backend's whole-matrix call on the same input in the same run, and verify.
//! The `wukong run` command and `wukong-bench` both use it.

use std::time::Instant;

use serde::Serialize;
use wukong_executor::{Progress, RunOptions, RunReport, Scheduler};
use wukong_linalg::{
    BackendKind, BlockMatrix, LinalgError, TileLayout, cholesky_flops, cholesky_plan, gemm_flops,
    gemm_plan, tile,
};

use crate::{Error, Runtime};

mod factor;
pub use factor::{Params, SolveKind, SvdKind};

/// The algorithms a workload can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Singular values (and vectors) of an m×n matrix: tall-skinny or randomized.
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
}

/// Where executors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Wall time of the whole-matrix library call on the same input.
    pub reference_seconds: f64,
    /// Its GFLOP/s.
    pub reference_gflops: f64,
    /// `gflops / reference_gflops`: above 1 the tiled run is faster.
    pub ratio: f64,
    /// Relative Frobenius residual of the tiled result: ‖A−LLᵀ‖/‖A‖ (Cholesky),
    /// ‖C−AB‖/(‖A‖‖B‖) with AB from the reference call (GEMM), ‖A−QR‖/‖A‖
    /// (TSQR with Q; without, ‖AᵀA−RᵀR‖/‖A‖²), the largest singular-value
    /// difference to the reference relative to σ₁ (SVD; with vectors also
    /// ‖A−UΣVᵀ‖/‖A‖ if larger), ‖AX−B‖/(‖A‖‖X‖) (triangular and Cholesky
    /// solves), ‖X−X_ref‖/‖X_ref‖ (least squares).
    pub residual: f64,
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
    /// The last tiled run's full report (timeline, per-executor records).
    #[serde(skip)]
    pub run: RunReport,
}

impl Workload {
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

    /// Runs the workload. `progress` sees each finished task of the tiled run.
    pub fn run(
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
                return Err(wukong_storage::StorageError::InvalidConfig {
                    what: "remote executors",
                    detail: "process and Lambda modes share state through Redis: give its URL (--store redis://…)".into(),
                }
                .into());
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

    pub(crate) fn report(
        &self,
        runtime: &Runtime,
        m: usize,
        k: usize,
        flops: f64,
        tasks: usize,
        timings: Timings,
    ) -> WorkloadReport {
        let seconds = median(&timings.tiled);
        let reference_seconds = median(&timings.reference);
        let gflops = flops / seconds / 1e9;
        let reference_gflops = flops / reference_seconds / 1e9;
        WorkloadReport {
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
            ratio: gflops / reference_gflops,
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
            cost: timings.run.cost,
            run: timings.run,
        }
    }

    fn gemm(
        &self,
        runtime: &Runtime,
        options: &RunOptions<'_>,
        m: usize,
        k: usize,
    ) -> Result<WorkloadReport, Error> {
        let n = self.n;
        let a = BlockMatrix::random(m, k, self.tile, self.tile, self.seed)?;
        let b = BlockMatrix::random(k, n, self.tile, self.tile, self.seed.wrapping_add(1))?;
        let (a_whole, b_whole) = (a.to_array(), b.to_array());
        let norms = a.frobenius_norm() * b.frobenius_norm();
        let mut timings = Timings::default();
        let mut last = None;
        for _ in 0..self.repeat.max(1) {
            let start = Instant::now();
            let computed = runtime.gemm_with(1.0, &a, &b, None, options)?;
            timings.tiled.push(start.elapsed().as_secs_f64());
            timings.utilization.push(computed.report.utilization());

            let start = Instant::now();
            let reference =
                runtime
                    .kernels()
                    .matmul_whole(a_whole.view(), b_whole.view(), self.threads)?;
            timings.reference.push(start.elapsed().as_secs_f64());
            last = Some((computed, reference));
        }
        let mut tasks = 0;
        if let Some((computed, reference)) = last {
            let difference = &computed.matrix.to_array() - &reference;
            timings.residual = tile::frobenius_norm(difference.view()) / norms;
            tasks = computed.tasks;
            timings.run = computed.report;
        }
        Ok(self.report(runtime, m, k, gemm_flops(m, n, k), tasks, timings))
    }

    fn cholesky(
        &self,
        runtime: &Runtime,
        options: &RunOptions<'_>,
    ) -> Result<WorkloadReport, Error> {
        let n = self.n;
        let generate = || BlockMatrix::random_spd(n, self.tile, self.seed);
        let mut timings = Timings::default();
        let mut last = None;
        for _ in 0..self.repeat.max(1) {
            // Each run factors a fresh copy: both sides work in place.
            let a = generate()?;
            let mut reference = a.to_array();

            // The tiled run owns its input, as the in-place reference does. The
            // store shares the input tiles, so each is copied once, by the
            // first update that writes it.
            let start = Instant::now();
            let computed = runtime.cholesky_with(a, options)?;
            timings.tiled.push(start.elapsed().as_secs_f64());
            timings.utilization.push(computed.report.utilization());

            let start = Instant::now();
            runtime
                .kernels()
                .cholesky_whole(reference.view_mut(), self.threads)?;
            timings.reference.push(start.elapsed().as_secs_f64());
            last = Some((computed, reference));
        }
        let mut tasks = 0;
        if let Some((computed, reference)) = last {
            let a = generate()?.to_array();
            let residual = |l: &ndarray::Array2<f64>| -> Result<f64, LinalgError> {
                let product = runtime
                    .kernels()
                    .matmul_whole(l.view(), l.t(), self.threads)?;
                Ok(tile::frobenius_norm((&a - &product).view()) / tile::frobenius_norm(a.view()))
            };
            timings.residual = residual(&computed.matrix.to_array())?;
            timings.reference_residual = Some(residual(&reference)?);
            tasks = computed.tasks;
            timings.run = computed.report;
        }
        Ok(self.report(runtime, n, n, cholesky_flops(n), tasks, timings))
    }
}

/// Measurements of repeated runs; each run times the tiled algorithm and then
/// the reference, so slow phases of a noisy machine hit both alike.
#[derive(Default)]
pub(crate) struct Timings {
    pub(crate) tiled: Vec<f64>,
    pub(crate) reference: Vec<f64>,
    pub(crate) utilization: Vec<f64>,
    pub(crate) residual: f64,
    pub(crate) reference_residual: Option<f64>,
    pub(crate) run: RunReport,
}

#[cfg(feature = "redis")]
fn with_redis(runtime: Runtime, url: &str) -> Result<Runtime, Error> {
    runtime.with_redis(url)
}

#[cfg(not(feature = "redis"))]
fn with_redis(_: Runtime, _: &str) -> Result<Runtime, Error> {
    Err(Error::Storage(
        wukong_storage::StorageError::InvalidConfig {
            what: "store",
            detail: "this build has no Redis support: rebuild with `--features redis`".into(),
        },
    ))
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
            let client = connection
                .runtime()
                .block_on(crate::lambda::LambdaClient::connect(
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
