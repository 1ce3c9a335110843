//! A benchmark matrix from a TOML file: workloads × tile sizes × backends ×
//! stores × schedulers, each row next to the fastest whole-matrix library call
//! measured in the same run, and the Wukong scheduler next to the
//! numpywren-style baseline on the same configuration.
//!
//! ```toml
//! [defaults]
//! threads = 2
//! repeat = 3
//!
//! [[workload]]
//! algorithm = "cholesky"
//! n = 8192
//! tiles = [512, 1024]
//! backends = ["faer", "openblas"]
//! schedulers = ["wukong", "numpywren"]
//! stores = ["memory", "$WUKONG_BENCH_REDIS"]   # `$NAME`: a URL from the environment
//! modes = ["local", "processes"]               # processes and lambda need a Redis store
//! workers = 2                                  # worker processes each process-mode run starts
//! ```
//!
//! Process mode runs the `wukong` executable next to this one (or
//! `$WUKONG_WORKER_EXE`) as workers; Lambda mode invokes `function` at
//! `lambda_endpoint` (e.g. a local `cargo lambda watch`).

use std::fmt::Write;
use wukong::dag::UnknownName;

use serde::{Deserialize, Serialize};
use wukong::workload::{
    Algorithm, Mode, Params, Remote, SolveKind, SvdKind, Workload, WorkloadReport,
};
use wukong::{BackendKind, Scheduler};

/// The file's contents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixFile {
    /// Settings every workload inherits.
    #[serde(default)]
    pub defaults: Defaults,
    /// The workloads.
    pub workload: Vec<Entry>,
}

/// Settings every workload inherits unless it sets its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Executor threads (default: one per core).
    pub threads: Option<usize>,
    /// Timed runs per configuration (default 3).
    pub repeat: Option<usize>,
    /// Seed of the inputs (default 42).
    pub seed: Option<u64>,
}

/// One workload and the values to sweep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `gemm`, `cholesky`, `tsqr`, `svd` or `solve`.
    pub algorithm: String,
    /// Order (Cholesky, triangular and Cholesky solves), columns of C (GEMM)
    /// or of A (TSQR, SVD, least squares).
    pub n: usize,
    /// Rows of A (GEMM, TSQR, SVD, least squares).
    pub m: Option<usize>,
    /// Inner dimension (GEMM).
    pub k: Option<usize>,
    /// Tile sizes.
    pub tiles: Vec<usize>,
    /// Kernel backends (default `["faer"]`).
    #[serde(default = "default_backends")]
    pub backends: Vec<String>,
    /// Schedulers (default `["wukong", "numpywren"]`).
    #[serde(default = "default_schedulers")]
    pub schedulers: Vec<String>,
    /// Stores: `memory`, a Redis URL, or `$NAME` for a URL in the environment
    /// (default `["memory"]`).
    #[serde(default = "default_stores")]
    pub stores: Vec<String>,
    /// Where executors run: `local` (default), `processes`, `lambda`.
    #[serde(default = "default_modes")]
    pub modes: Vec<String>,
    /// Process mode: worker processes per run (default 2).
    pub workers: Option<usize>,
    /// Lambda mode: the function (default `wukong-lambda`).
    pub function: Option<String>,
    /// Lambda mode: the Lambda API endpoint (default AWS's); `$NAME` reads it
    /// from the environment.
    pub lambda_endpoint: Option<String>,
    /// Lambda mode: executors at once (default 1000).
    pub concurrency: Option<u32>,
    /// Overrides [`Defaults::threads`].
    pub threads: Option<usize>,
    /// Overrides [`Defaults::repeat`].
    pub repeat: Option<usize>,
    /// Overrides [`Defaults::seed`].
    pub seed: Option<u64>,
    /// TSQR, tall SVD, least squares: reduction-tree arity (default 4).
    pub arity: Option<usize>,
    /// TSQR, SVD, least squares: `cholesky-qr2` (default) or `householder` tiles.
    pub leaf: Option<String>,
    /// TSQR: form Q (default false).
    pub q: Option<bool>,
    /// Tile QR, full SVD: `flat` (default) or `binary` panels.
    pub panel: Option<String>,
    /// SVD: `tall` (default) or `randomized`.
    pub svd: Option<String>,
    /// SVD: singular vectors too (default false).
    pub vectors: Option<bool>,
    /// Randomized SVD: rank (default 100).
    pub rank: Option<usize>,
    /// Randomized SVD: oversampling (default 10).
    pub oversampling: Option<usize>,
    /// Randomized SVD: power iterations (default 1).
    pub power: Option<usize>,
    /// Solve: `triangular`, `cholesky` (default) or `lstsq`.
    pub solve: Option<String>,
    /// Solve: right-hand sides (default 16).
    pub rhs: Option<usize>,
}

impl Entry {
    /// The algorithm settings, defaults filled in.
    fn params(&self) -> Result<Params, String> {
        let defaults = Params::default();
        Ok(Params {
            arity: self.arity.unwrap_or(defaults.arity),
            leaf: match &self.leaf {
                Some(leaf) => leaf.parse().map_err(|e: UnknownName| e.to_string())?,
                None => defaults.leaf,
            },
            explicit_q: self.q.unwrap_or(defaults.explicit_q),
            panel: match &self.panel {
                Some(panel) => panel.parse().map_err(|e: UnknownName| e.to_string())?,
                None => defaults.panel,
            },
            svd: match &self.svd {
                Some(svd) => svd.parse().map_err(|e: UnknownName| e.to_string())?,
                None => SvdKind::Tall,
            },
            vectors: self.vectors.unwrap_or(defaults.vectors),
            rank: self.rank.unwrap_or(defaults.rank),
            oversampling: self.oversampling.unwrap_or(defaults.oversampling),
            power_iterations: self.power.unwrap_or(defaults.power_iterations),
            solve: match &self.solve {
                Some(solve) => solve.parse().map_err(|e: UnknownName| e.to_string())?,
                None => SolveKind::Cholesky,
            },
            rhs: self.rhs.unwrap_or(defaults.rhs),
        })
    }
}

fn default_backends() -> Vec<String> {
    vec!["faer".into()]
}
fn default_schedulers() -> Vec<String> {
    vec!["wukong".into(), "numpywren".into()]
}
fn default_stores() -> Vec<String> {
    vec!["memory".into()]
}
fn default_modes() -> Vec<String> {
    vec!["local".into()]
}

/// The remote settings of `mode` for `entry`.
fn remote(entry: &Entry, mode: &str) -> Result<Option<Remote>, String> {
    let from_env = |value: &str| match value.strip_prefix('$') {
        Some(name) => std::env::var(name)
            .map_err(|_| format!("{value}: the environment variable {name} is not set")),
        None => Ok(value.to_owned()),
    };
    Ok(match mode {
        "local" => None,
        "processes" => {
            let exe = match std::env::var_os("WUKONG_WORKER_EXE") {
                Some(exe) => std::path::PathBuf::from(exe),
                None => std::env::current_exe()
                    .map_err(|e| format!("cannot find this executable: {e}"))?
                    .with_file_name(format!("wukong{}", std::env::consts::EXE_SUFFIX)),
            };
            Some(Remote {
                worker_exe: Some(exe),
                ..Remote::processes(entry.workers.unwrap_or(2))
            })
        }
        "lambda" => Some(Remote {
            lambda_endpoint: entry.lambda_endpoint.as_deref().map(from_env).transpose()?,
            concurrency: entry.concurrency.unwrap_or(1000),
            ..Remote::lambda(
                entry
                    .function
                    .clone()
                    .unwrap_or_else(|| "wukong-lambda".into()),
            )
        }),
        other => {
            return Err(format!(
                "unknown mode {other:?}: use local, processes or lambda"
            ));
        }
    })
}

/// Why a matrix could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatrixError {
    /// The file is not valid TOML or misses a field.
    #[error("cannot read the benchmark matrix: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value names nothing this build knows.
    #[error("workload {index} ({algorithm} n={n}): {detail}")]
    Invalid {
        /// Position of the workload in the file, from 0.
        index: usize,
        /// Its algorithm.
        algorithm: String,
        /// Its size.
        n: usize,
        /// What is wrong.
        detail: String,
    },
    /// A run failed.
    #[error(transparent)]
    Run(#[from] wukong::Error),
}

/// One row of the results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The run's own report (times, residual, store bytes, …).
    #[serde(flatten)]
    pub report: WorkloadReport,
    /// The fastest whole-matrix reference of this workload in this run (any backend), seconds.
    pub best_reference_seconds: f64,
    /// `best_reference_seconds / seconds`: above 1 the tiled run is faster.
    pub ratio_to_best_reference: f64,
    /// Bytes the executors moved through the store (read + written).
    pub store_bytes: u64,
    /// Wukong rows: store bytes over those of the numpywren-style run of the
    /// same configuration.
    pub bytes_vs_numpywren: Option<f64>,
    /// Wukong rows: wall time over that of the numpywren-style run.
    pub time_vs_numpywren: Option<f64>,
}

impl MatrixFile {
    /// Parses a matrix file's text.
    pub fn parse(text: &str) -> Result<Self, MatrixError> {
        Ok(toml::from_str(text)?)
    }

    /// The workloads to run, checked before anything runs.
    pub fn workloads(&self) -> Result<Vec<Vec<Workload>>, MatrixError> {
        let mut groups = Vec::new();
        for (index, entry) in self.workload.iter().enumerate() {
            let invalid = |detail: String| MatrixError::Invalid {
                index,
                algorithm: entry.algorithm.clone(),
                n: entry.n,
                detail,
            };
            let algorithm = match entry.algorithm.as_str() {
                "gemm" => Algorithm::Gemm,
                "cholesky" => Algorithm::Cholesky,
                "tsqr" => Algorithm::Tsqr,
                "qr" => Algorithm::Qr,
                "svd" => Algorithm::Svd,
                "solve" => Algorithm::Solve,
                other => return Err(invalid(format!("unknown algorithm {other:?}"))),
            };
            let params = entry.params().map_err(invalid)?;
            if entry.tiles.is_empty() || entry.tiles.contains(&0) {
                return Err(invalid(
                    "tiles must be a non-empty list of positive sizes".into(),
                ));
            }
            let threads = entry
                .threads
                .or(self.defaults.threads)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            let mut group = Vec::new();
            for &tile in &entry.tiles {
                for backend in &entry.backends {
                    let backend: BackendKind = backend
                        .parse()
                        .map_err(|e: UnknownName| invalid(e.to_string()))?;
                    for (store, mode) in entry
                        .stores
                        .iter()
                        .flat_map(|s| entry.modes.iter().map(move |m| (s, m)))
                    {
                        let redis = resolve_store(store).map_err(invalid)?;
                        let remote = remote(entry, mode).map_err(invalid)?;
                        if remote.is_some() && redis.is_none() {
                            return Err(invalid(format!(
                                "mode {mode} shares state through Redis: give a Redis store"
                            )));
                        }
                        for scheduler in &entry.schedulers {
                            group.push(Workload {
                                algorithm,
                                n: entry.n,
                                m: entry.m,
                                k: entry.k,
                                tile,
                                threads,
                                backend,
                                seed: entry.seed.or(self.defaults.seed).unwrap_or(42),
                                repeat: entry.repeat.or(self.defaults.repeat).unwrap_or(3),
                                scheduler: scheduler
                                    .parse()
                                    .map_err(|e: UnknownName| invalid(e.to_string()))?,
                                redis: redis.clone(),
                                remote: remote.clone(),
                                params: params.clone(),
                                ..Workload::new(algorithm, entry.n)
                            });
                        }
                    }
                }
            }
            groups.push(group);
        }
        Ok(groups)
    }
}

/// `memory` → `None`; a Redis URL, or `$NAME` naming one, → `Some(url)`.
fn resolve_store(store: &str) -> Result<Option<String>, String> {
    let url = match store.strip_prefix('$') {
        Some(name) => std::env::var(name)
            .map_err(|_| format!("store {store}: the environment variable {name} is not set"))?,
        None => store.to_owned(),
    };
    match url.as_str() {
        "memory" => Ok(None),
        u if u.starts_with("redis://") || u.starts_with("rediss://") => Ok(Some(url)),
        other => Err(format!("store {other:?}: use memory or a redis:// URL")),
    }
}

/// Runs every workload of every group; `on_row` sees each report as it
/// finishes. Rows are completed with comparisons once their group has run.
pub fn run(
    groups: &[Vec<Workload>],
    mut on_report: impl FnMut(&WorkloadReport),
) -> Result<Vec<Row>, MatrixError> {
    let mut rows = Vec::new();
    for group in groups {
        let mut reports = Vec::with_capacity(group.len());
        for workload in group {
            let report = workload.run(None)?;
            on_report(&report);
            reports.push(report);
        }
        rows.extend(compare(reports));
    }
    Ok(rows)
}

/// Adds the comparisons to the reports of one workload.
pub fn compare(reports: Vec<WorkloadReport>) -> Vec<Row> {
    let best = reports
        .iter()
        .filter_map(|r| r.reference_seconds)
        .fold(f64::INFINITY, f64::min);
    let bytes = |r: &WorkloadReport| r.store_bytes_read + r.store_bytes_written;
    let baseline = |r: &WorkloadReport| {
        reports.iter().find(|o| {
            o.scheduler == Scheduler::Numpywren.name()
                && (o.tile, o.backend, &o.store, o.mode) == (r.tile, r.backend, &r.store, r.mode)
        })
    };
    let mut rows = Vec::with_capacity(reports.len());
    for report in &reports {
        let versus = (report.scheduler == Scheduler::Wukong.name())
            .then(|| baseline(report))
            .flatten();
        rows.push(Row {
            best_reference_seconds: best,
            ratio_to_best_reference: best / report.seconds,
            store_bytes: bytes(report),
            bytes_vs_numpywren: versus.map(|o| bytes(report) as f64 / bytes(o).max(1) as f64),
            time_vs_numpywren: versus.map(|o| report.seconds / o.seconds),
            report: report.clone(),
        });
    }
    rows
}

/// The rows as a fixed-width table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:>6} {:>5} {:<8} {:<10} {:<8} {:>9} {:>8} {:>9} {:>11} {:>10} {:>9} {:>9}",
        "algorithm",
        "n",
        "tile",
        "backend",
        "scheduler",
        "store",
        "seconds",
        "GFLOP/s",
        "vs best",
        "store MiB",
        "bytes/npw",
        "time/npw",
        "residual"
    );
    let optional = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.3}"));
    for row in rows {
        let r = &row.report;
        let store = match (r.store.as_str(), r.mode) {
            ("memory", _) => "memory",
            (_, Mode::Local) => "redis",
            (_, Mode::Processes) => "redis/pr",
            (_, Mode::Lambda) => "redis/λ",
        };
        let _ = writeln!(
            out,
            "{:<9} {:>6} {:>5} {:<8} {:<10} {:<8} {:>9.3} {:>8.1} {:>9.3} {:>11.1} {:>10} {:>9} {:>9.1e}",
            r.algorithm.name(),
            r.n,
            r.tile,
            r.backend,
            r.scheduler,
            store,
            r.seconds,
            r.gflops,
            row.ratio_to_best_reference,
            row.store_bytes as f64 / (1024.0 * 1024.0),
            optional(row.bytes_vs_numpywren),
            optional(row.time_vs_numpywren),
            r.residual.unwrap_or(f64::NAN)
        );
    }
    out
}

/// The rows as CSV with a header line.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "algorithm,n,m,k,tile,threads,backend,scheduler,store,repeat,seconds,gflops,reference_seconds,best_reference_seconds,ratio_to_best_reference,store_bytes_read,store_bytes_written,store_bytes,bytes_vs_numpywren,time_vs_numpywren,invocations,cache_hits,executors,residual\n",
    );
    let optional = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x}"));
    for row in rows {
        let r = &row.report;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.algorithm.name(),
            r.n,
            r.m,
            r.k,
            r.tile,
            r.threads,
            r.backend,
            r.scheduler,
            r.store.replace('"', "\"\""),
            r.repeat,
            r.seconds,
            r.gflops,
            optional(r.reference_seconds),
            row.best_reference_seconds,
            row.ratio_to_best_reference,
            r.store_bytes_read,
            r.store_bytes_written,
            row.store_bytes,
            optional(row.bytes_vs_numpywren),
            optional(row.time_vs_numpywren),
            r.invocations,
            r.cache_hits,
            r.executors,
            optional(r.residual)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SMALL: &str = r#"
        [defaults]
        threads = 2
        repeat = 1

        [[workload]]
        algorithm = "cholesky"
        n = 160
        tiles = [40, 80]

        [[workload]]
        algorithm = "gemm"
        n = 100
        m = 60
        tiles = [50]
        schedulers = ["wukong", "numpywren", "shared"]
    "#;

    #[test]
    fn a_small_matrix_runs_and_compares() {
        let file = MatrixFile::parse(SMALL).unwrap();
        let groups = file.workloads().unwrap();
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3]);
        let rows = run(&groups, |_| {}).unwrap();
        assert_eq!(rows.len(), 7);
        for row in &rows {
            assert!(row.report.residual.unwrap() < 1e-13, "{row:?}");
            assert!(row.best_reference_seconds <= row.report.reference_seconds.unwrap());
            let wukong = row.report.scheduler == "wukong";
            assert_eq!(row.bytes_vs_numpywren.is_some(), wukong);
            if wukong {
                assert!(row.bytes_vs_numpywren.unwrap() < 1.0, "{row:?}");
            }
        }
        let text = table(&rows);
        assert_eq!(text.lines().count(), 8);
        let csv = csv(&rows);
        assert_eq!(csv.lines().count(), 8);
        assert!(csv.lines().all(|l| l.split(',').count() == 24), "{csv}");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        for (text, needle) in [
            (
                "[[workload]]\nalgorithm = \"lu\"\nn = 4\ntiles = [2]",
                "unknown algorithm \"lu\"",
            ),
            (
                "[[workload]]\nalgorithm = \"gemm\"\nn = 4\ntiles = []",
                "tiles must be",
            ),
            (
                "[[workload]]\nalgorithm = \"gemm\"\nn = 4\ntiles = [2]\nstores = [\"s3://x\"]",
                "use memory or a redis:// URL",
            ),
            (
                "[[workload]]\nalgorithm = \"gemm\"\nn = 4\ntiles = [2]\nschedulers = [\"dask\"]",
                "unknown scheduler",
            ),
            (
                "[[workload]]\nalgorithm = \"gemm\"\nn = 4\ntiles = [2]\nstores = [\"$WUKONG_NO_SUCH_VARIABLE\"]",
                "is not set",
            ),
            (
                "[[workload]]\nalgorithm = \"gemm\"\ntiles = [2]",
                "missing field `n`",
            ),
            (
                "[[workload]]\nalgorithm = \"gemm\"\nn = 4\ntiles = [2]\nsize = 3",
                "unknown field",
            ),
        ] {
            let err = MatrixFile::parse(text)
                .and_then(|f| f.workloads().map(|_| ()))
                .unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
