//! Benchmarks of wukong: tiled runs against the whole-matrix library call
//! measured in the same run, reported as ratios.
//!
//! [`sweep`] runs one workload over several tile sizes and backends; the
//! `wukong-bench` binary prints the table and writes the reports as JSON.
//!
//! ```
//! use wukong::BackendKind;
//! use wukong::workload::{Algorithm, Workload};
//!
//! let base = Workload {
//!     tile: 32,
//!     threads: 2,
//!     seed: 1,
//!     ..Workload::new(Algorithm::Cholesky, 96)
//! };
//! let reports = wukong_bench::sweep(&base, &[24, 48], &[BackendKind::Faer], |_| {})?;
//! assert_eq!(reports.len(), 2);
//! assert!(reports.iter().all(|r| r.residual.is_some_and(|x| x < 1e-14)));
//! println!("{}", wukong_bench::table(&reports));
//! # Ok::<(), wukong::Error>(())
//! ```

pub mod ceiling;
pub mod matrix;
pub mod overhead;
pub mod storage;

use wukong::BackendKind;
use wukong::workload::{Workload, WorkloadReport};

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Parameters the measurement cannot use.
    #[error("{0}")]
    Usage(String),
    /// A kernel or a matrix generator failed.
    #[error(transparent)]
    Linalg(#[from] wukong::linalg::LinalgError),
    /// A thread of the measurement panicked.
    #[error("a tile kernel thread panicked")]
    Panicked,
    /// A reference program (python3 with boto3) could not run or gave no figures.
    #[error("{0}")]
    Reference(String),
}

/// Runs `base` once for each backend and tile size, calling `on_report` after each.
pub fn sweep(
    base: &Workload,
    tiles: &[usize],
    backends: &[BackendKind],
    mut on_report: impl FnMut(&WorkloadReport),
) -> Result<Vec<WorkloadReport>, wukong::Error> {
    let mut reports = Vec::with_capacity(tiles.len() * backends.len());
    for &backend in backends {
        for &tile in tiles {
            let workload = Workload {
                tile,
                backend,
                ..base.clone()
            };
            let report = workload.run(None)?;
            on_report(&report);
            reports.push(report);
        }
    }
    Ok(reports)
}

/// The best report by throughput, per backend.
pub fn best_per_backend(reports: &[WorkloadReport]) -> Vec<&WorkloadReport> {
    let mut best: Vec<&WorkloadReport> = Vec::new();
    for report in reports {
        match best.iter_mut().find(|b| b.backend == report.backend) {
            Some(slot) if slot.gflops < report.gflops => *slot = report,
            Some(_) => {}
            None => best.push(report),
        }
    }
    best
}

/// A fixed-width table of reports, one row each.
pub fn table(reports: &[WorkloadReport]) -> String {
    let mut out = format!(
        "{:<9} {:>7} {:>6} {:<9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9}\n",
        "algorithm",
        "n",
        "tile",
        "backend",
        "tasks",
        "seconds",
        "GFLOP/s",
        "ref s",
        "ref GF/s",
        "ratio",
        "residual"
    );
    for r in reports {
        out.push_str(&row(r));
    }
    out
}

/// One row of [`table`].
pub fn row(r: &WorkloadReport) -> String {
    format!(
        "{:<9} {:>7} {:>6} {:<9} {:>7} {:>9.3} {:>9.1} {:>9.3} {:>9.1} {:>7.3} {:>9.1e}\n",
        r.algorithm.name(),
        r.n,
        r.tile,
        r.backend,
        r.tasks,
        r.seconds,
        r.gflops,
        r.reference_seconds.unwrap_or(f64::NAN),
        r.reference_gflops.unwrap_or(f64::NAN),
        r.ratio.unwrap_or(f64::NAN),
        r.residual.unwrap_or(f64::NAN)
    )
}
