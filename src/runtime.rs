use std::collections::HashMap;
use std::sync::Arc;

use wukong_dag::{Dag, DataId};
use wukong_executor::remote::{Connection, KernelRegistry, RemoteConfig, RemoteError};
use wukong_executor::{
    Engine, EngineConfig, ExecError, Kernels, RunOptions, RunReport, Scheduler, Stores,
};
use wukong_linalg::{
    BackendKind, BlockMatrix, LinalgError, Tile, TileBackend, TileMap, TileOp, cholesky_plan,
    gemm_plan,
};
use wukong_storage::StorageError;

/// Why a computation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input or a numerical failure (shape mismatch, NaN, not positive definite…).
    #[error(transparent)]
    Linalg(#[from] LinalgError),
    /// The executor failed for a reason other than the math.
    #[error(transparent)]
    Exec(ExecError<LinalgError>),
    /// A store could not be reached or set up.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Executors in other processes or functions (process and Lambda modes).
    #[error(transparent)]
    Remote(RemoteError),
    /// Options that do not go together, or that the input contradicts.
    #[error("{detail}")]
    Usage {
        /// What is wrong and what to do.
        detail: String,
    },
    /// The math failed on a matrix read from a file (not positive definite,
    /// not symmetric, rank deficient): the error names the file.
    #[error("{operand} = {}: {problem}", path.display())]
    InFile {
        /// The file.
        path: std::path::PathBuf,
        /// Which operand it is (`A`, `B`).
        operand: &'static str,
        /// What is wrong with it (in the message, so not a `source()`).
        problem: Box<LinalgError>,
    },
    /// Results cannot be written where they were asked for.
    #[error("cannot write results to {}: {detail}", path.display())]
    Output {
        /// The output directory.
        path: std::path::PathBuf,
        /// Why.
        detail: String,
    },
    /// The run would need more memory than the machine has free.
    #[error(
        "this run needs about {} of memory ({breakdown}) but {} is available ({limit}): {advice}",
        crate::memory::format_bytes(*needed),
        crate::memory::format_bytes(*available)
    )]
    OutOfMemory {
        /// Estimated peak bytes of the run.
        needed: u64,
        /// What the estimate is made of.
        breakdown: String,
        /// Bytes available.
        available: u64,
        /// What limits them.
        limit: crate::memory::Limit,
        /// What to change.
        advice: String,
    },
}

impl From<ExecError<LinalgError>> for Error {
    fn from(error: ExecError<LinalgError>) -> Self {
        match error {
            // The kernel's own error already names the tile and the value.
            ExecError::Task { source, .. } => Error::Linalg(source),
            ExecError::Remote(error) => Error::from(error),
            other => Error::Exec(other),
        }
    }
}

impl From<RemoteError> for Error {
    fn from(error: RemoteError) -> Self {
        match error {
            RemoteError::Store(error) => Error::Storage(error),
            other => Error::Remote(other),
        }
    }
}

/// Connects the math of `wukong-linalg` to the executor.
#[derive(Clone, Copy)]
pub struct TileKernels(&'static dyn TileBackend);

impl Kernels<TileOp> for TileKernels {
    type Value = Tile;
    type Error = LinalgError;
    fn execute(&self, op: &TileOp, inputs: Vec<Arc<Tile>>) -> Result<Vec<Tile>, LinalgError> {
        op.execute(self.0, inputs)
    }
}

/// The tile kernels of every backend, by name, for worker processes and
/// Lambda functions ([`Host`](crate::remote::Host)): a job's spec names the
/// backend its driver chose.
#[derive(Debug, Clone, Copy, Default)]
pub struct TileRegistry;

impl KernelRegistry for TileRegistry {
    type Op = TileOp;
    type Value = Tile;
    type Error = LinalgError;
    type Kernels = TileKernels;

    fn kernels(
        &self,
        backend: &str,
    ) -> Result<TileKernels, Box<dyn std::error::Error + Send + Sync>> {
        let backend: BackendKind = backend.parse()?;
        Ok(TileKernels(backend.kernels()?))
    }
}

/// A result with the facts of the run that produced it.
#[derive(Debug)]
pub struct Computed {
    /// The result.
    pub matrix: BlockMatrix,
    /// Timings of the run.
    pub report: RunReport,
    /// Number of tasks in the graph.
    pub tasks: usize,
}

/// Runs tiled algorithms on executors that are threads of this process: by
/// default the Wukong scheduler over an in-memory store, or the
/// numpywren-style baseline, or a Redis store (feature `redis`).
#[derive(Clone)]
pub struct Runtime {
    config: EngineConfig,
    backend: BackendKind,
    kernels: &'static dyn TileBackend,
    stores: Stores,
    store_name: String,
    /// Drives network stores (Redis); shared by clones.
    _connection: Option<Connection>,
    remote: Option<(Connection, RemoteConfig)>,
    lambda_memory_mb: u32,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("threads", &self.config.threads)
            .field("scheduler", &self.config.scheduler)
            .field("backend", &self.backend)
            .field("store", &self.store_name)
            .finish()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    /// One executor thread per core, faer kernels, the Wukong scheduler on an
    /// in-memory store.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            config: EngineConfig::new(threads),
            backend: BackendKind::Faer,
            kernels: &wukong_linalg::kernels::FaerBackend,
            stores: Stores::memory(),
            store_name: "memory".into(),
            _connection: None,
            remote: None,
            lambda_memory_mb: 2048,
        }
    }

    /// Uses `threads` executor threads (at least one).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.config.threads = threads.max(1);
        self
    }

    /// Uses another scheduler.
    pub fn with_scheduler(mut self, scheduler: Scheduler) -> Self {
        self.config.scheduler = scheduler;
        self
    }

    /// Changes further settings of the executors (clustering thresholds,
    /// cache budget, fault injection).
    pub fn with_config(mut self, change: impl FnOnce(&mut EngineConfig)) -> Self {
        change(&mut self.config);
        self.config.threads = self.config.threads.max(1);
        self
    }

    /// Keeps objects and coordination in the Redis server at `url`
    /// (`redis://[:password@]host:port[/db]` or `rediss://…`). Fails with a
    /// clear error if the server cannot be reached.
    #[cfg(feature = "redis")]
    pub fn with_redis(mut self, url: &str) -> Result<Self, Error> {
        let connection = Connection::open(url, &crate::remote::ObjectTarget::default())?;
        self.store_name = connection.endpoint().to_owned();
        self.stores = connection.stores().clone();
        self._connection = Some(connection);
        Ok(self)
    }

    /// Uses `stores` for objects and coordination; `name` appears in reports.
    pub fn with_stores(mut self, stores: Stores, name: impl Into<String>) -> Self {
        self.stores = stores;
        self.store_name = name.into();
        self
    }

    /// Runs executors in worker processes or Lambda functions reached
    /// through `connection` (see [`remote`](crate::remote)) instead of threads
    /// of this process.
    pub fn with_remote(mut self, connection: Connection, config: RemoteConfig) -> Self {
        self.store_name = connection.endpoint().to_owned();
        self.remote = Some((connection, config));
        self
    }

    /// The function size assumed by the cost estimate of each run's report.
    pub fn with_lambda_memory(mut self, megabytes: u32) -> Self {
        self.lambda_memory_mb = megabytes.max(128);
        self
    }

    /// The scheduler.
    pub fn scheduler(&self) -> Scheduler {
        self.config.scheduler
    }

    /// The store, as reports name it (`memory`, or a Redis URL without password).
    pub fn store_name(&self) -> &str {
        &self.store_name
    }

    /// Uses another kernel backend; fails if it was not compiled in.
    pub fn with_backend(mut self, backend: BackendKind) -> Result<Self, Error> {
        self.kernels = backend.kernels()?;
        self.backend = backend;
        Ok(self)
    }

    /// Executor threads.
    pub fn threads(&self) -> usize {
        self.config.threads
    }

    /// The kernel backend.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The kernels of the backend, for whole-matrix reference calls.
    pub fn kernels(&self) -> &'static dyn TileBackend {
        self.kernels
    }

    /// `A·B`.
    pub fn gemm(&self, a: &BlockMatrix, b: &BlockMatrix) -> Result<BlockMatrix, Error> {
        Ok(self
            .gemm_with(1.0, a, b, None, &RunOptions::default())?
            .matrix)
    }

    /// `α·A·B + β·C`.
    pub fn gemm_update(
        &self,
        alpha: f64,
        a: &BlockMatrix,
        b: &BlockMatrix,
        beta: f64,
        c: &BlockMatrix,
    ) -> Result<BlockMatrix, Error> {
        Ok(self
            .gemm_with(alpha, a, b, Some((c, beta)), &RunOptions::default())?
            .matrix)
    }

    /// `α·A·B`, plus `β·C` when `c` is given, with run options and a report.
    pub fn gemm_with(
        &self,
        alpha: f64,
        a: &BlockMatrix,
        b: &BlockMatrix,
        c: Option<(&BlockMatrix, f64)>,
        options: &RunOptions<'_>,
    ) -> Result<Computed, Error> {
        let plan = gemm_plan(
            a.layout(),
            b.layout(),
            alpha,
            c.map(|(c, beta)| (c.layout(), beta)),
        )?;
        a.check_finite("A")?;
        b.check_finite("B")?;
        let mut inputs = tiles_of(&plan.a, a);
        inputs.extend(tiles_of(&plan.b, b));
        if let (Some(map), Some((c, _))) = (&plan.c_in, c) {
            c.check_finite("C")?;
            inputs.extend(tiles_of(map, c));
        }
        self.execute(&plan.dag, inputs, &plan.c, options)
    }

    /// Lower Cholesky factor `L` of a symmetric positive-definite `A = L·Lᵀ`,
    /// reading the lower triangle of `A` only (see [`cholesky_with`](Self::cholesky_with)).
    pub fn cholesky(&self, a: &BlockMatrix) -> Result<BlockMatrix, Error> {
        Ok(self
            .cholesky_with(a.clone(), &RunOptions::default())?
            .matrix)
    }

    /// Cholesky with run options and a report. Takes the matrix by value: tiles
    /// that nobody else shares are factored in place, without a copy.
    ///
    /// Like LAPACK's `dpotrf`, only the lower triangle of `A` is read: the
    /// upper triangle may hold anything, including its mirror image or nothing.
    /// Checks before running that `A` is square in square tiles and that its
    /// lower triangle is finite; a non-positive pivot stops the run with
    /// [`LinalgError::NotPositiveDefinite`] naming its tile and row.
    pub fn cholesky_with(
        &self,
        a: BlockMatrix,
        options: &RunOptions<'_>,
    ) -> Result<Computed, Error> {
        let plan = cholesky_plan(a.layout())?;
        a.check_finite_lower("A")?;
        let inputs = tiles_of(&plan.a, &a);
        drop(a);
        self.execute(&plan.dag, inputs, &plan.l, options)
    }

    fn execute(
        &self,
        dag: &Dag<TileOp>,
        inputs: Vec<(DataId, Arc<Tile>)>,
        result: &TileMap,
        options: &RunOptions<'_>,
    ) -> Result<Computed, Error> {
        let (mut outputs, report) = self.run_graph(dag, inputs, options)?;
        Ok(Computed {
            matrix: assemble(result, &mut outputs)?,
            report,
            tasks: dag.num_tasks(),
        })
    }

    /// Whether graphs run on worker processes or Lambda functions.
    pub(crate) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Runs a graph on this runtime's executors and returns its outputs and
    /// the run's report (with its cost estimate).
    pub(crate) fn run_graph(
        &self,
        dag: &Dag<TileOp>,
        inputs: Vec<(DataId, Arc<Tile>)>,
        options: &RunOptions<'_>,
    ) -> Result<(HashMap<DataId, Arc<Tile>>, RunReport), Error> {
        let outcome = match &self.remote {
            Some((connection, remote)) => crate::remote::run_job(
                &crate::remote::Submission {
                    connection,
                    remote,
                    scheduler: self.config.scheduler,
                    backend: self.backend.name(),
                    dag,
                },
                inputs,
            )?,
            None => self.run_here(dag, inputs, options)?,
        };
        let mut report = outcome.report;
        if report.scheduler != Scheduler::Shared.name() {
            report.cost = Some(report.estimate_cost(self.lambda_memory_mb));
        }
        Ok((outcome.outputs, report))
    }

    fn run_here(
        &self,
        dag: &Dag<TileOp>,
        inputs: Vec<(DataId, Arc<Tile>)>,
        options: &RunOptions<'_>,
    ) -> Result<wukong_executor::RunOutcome<Tile>, Error> {
        Ok(Engine::new(self.config.clone()).run(
            dag,
            &TileKernels(self.kernels),
            inputs,
            &self.stores,
            options,
        )?)
    }
}

pub(crate) fn tiles_of(map: &TileMap, matrix: &BlockMatrix) -> Vec<(DataId, Arc<Tile>)> {
    map.items
        .iter()
        .zip(matrix.tiles())
        .filter_map(|(item, tile)| item.map(|d| (d, Arc::clone(tile))))
        .collect()
}

/// Builds the result from the run's outputs; tiles the plan leaves out are
/// zero and share one allocation per shape.
pub(crate) fn assemble(
    map: &TileMap,
    outputs: &mut HashMap<DataId, Arc<Tile>>,
) -> Result<BlockMatrix, Error> {
    let matrix = map.assemble(outputs)?;
    // The caller's map no longer holds these tiles, so they are not shared.
    for item in map.items.iter().flatten() {
        outputs.remove(item);
    }
    Ok(matrix)
}
